"""The HTTP connector: an action is one request to a system's API, under an idempotency key.

A binding names the method, a path template and a JSON body template:

    execute:
      connector: crm
      method: POST
      path: /leads/{lead}/owner            # `{name}`: a parameter, URL-quoted as one path segment
      body: {owner: params.owner, reason: params.reason, source: rulebridge}

In the body, a string `params.NAME` is replaced by the parameter's JSON value (an optional
parameter left out drops its key); everything else is sent as written. Parameters never enter
the path unescaped: each is percent-encoded whole (`/`, `?`, `#` and `..` included), so a value
cannot change which resource is addressed. Every request carries `Idempotency-Key: KEY`; the
system is expected to apply a key once (retries resend the same key).

Faults: a timeout, a refused or dropped connection, 408/425/429 and 5xx → `TransientError`;
any other 4xx (and a redirect, which is not followed) → `PermanentError`.

`status(key)` is `"unknown"` unless the connector declares a status endpoint in
`rulebridge.toml` (`status = {method = "GET", path = "/executions/{key}"}`): 2xx → done,
404 → not done. It is per connector, not per action, because `status` is asked with the key
alone (after a crash, nothing else is known).
"""

from __future__ import annotations

import string
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from engine.errors import DiagnosticSink, suggest_help
from engine.lang.actions import ActionCatalog, ActionSpec, ExecBinding
from engine.lang.source import LStr, span_of

from .base import ExecutionStatus, PermanentError, TransientError
from .values import checked_params

KEYS = ("method", "path", "body")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESERVED = "key"  # `{key}` in a path is the idempotency key
_TRANSIENT_STATUS = {408, 425, 429}
MAX_BODY = 4000  # characters of a response body kept in the result


@dataclass(frozen=True)
class HttpTemplate:
    """One action's request."""

    method: str
    path: str
    body: Any


def compose(template: dict[str, Any]) -> HttpTemplate:
    from engine.lang.source import plain

    return HttpTemplate(str(template.get("method", "POST")).upper(), str(template["path"]), plain(template.get("body")))


def path_fields(path: str) -> list[str]:
    """The `{name}` placeholders of a path template (a format spec or conversion is not allowed)."""
    out = []
    for _lit, name, spec, conv in string.Formatter().parse(path):
        if name is None:
            continue
        if spec or conv or not name.isidentifier():
            raise ValueError(f"`{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}` is not a "
                             "plain `{name}` placeholder")
        out.append(name)
    return out


def body_refs(body: Any) -> list[tuple[str, Any]]:
    """The parameters a body template refers to (`params.NAME` strings), each with the string as written."""
    if isinstance(body, str):
        return [(body[len("params."):], body)] if body.startswith("params.") else []
    if isinstance(body, dict):
        return [r for v in body.values() for r in body_refs(v)]
    if isinstance(body, list):
        return [r for v in body for r in body_refs(v)]
    return []


_ABSENT = object()


def render_body(body: Any, values: dict[str, Any]) -> Any:
    """The body template with `params.NAME` strings replaced by JSON values; absent optional ones dropped."""
    if isinstance(body, str) and body.startswith("params."):
        return values.get(body[len("params."):], _ABSENT)
    if isinstance(body, dict):
        out = {k: render_body(v, values) for k, v in body.items()}
        return {k: v for k, v in out.items() if v is not _ABSENT}
    if isinstance(body, list):
        return [v for v in (render_body(x, values) for x in body) if v is not _ABSENT]
    return body


def segment(value: Any) -> str:
    """One value as one path segment: every reserved character percent-encoded, `.`/`..` too."""
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if text == "":
        raise PermanentError("an empty value cannot be a path segment", code="connector_bad_params")
    quoted = urllib.parse.quote(text, safe="")
    return quoted.replace(".", "%2E") if set(text) == {"."} else quoted


def render_path(path: str, values: dict[str, Any], key: str) -> str:
    fields = {name: segment(key if name == RESERVED else values.get(name, "")) for name in path_fields(path)}
    return path.format(**fields)


class HttpConnector:
    """Actions as HTTP requests to one API (`base_url`), with a timeout and an idempotency key."""

    kind = "http"

    def __init__(self, name: str, actions: ActionCatalog, *, base_url: str, timeout: float = 5.0,
                 status: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.name = name
        self.status_endpoint = ({"method": str(status.get("method", "GET")).upper(), "path": str(status["path"])}
                                if status else None)
        self.client = httpx.Client(base_url=base_url, timeout=float(timeout), follow_redirects=False,
                                   headers=dict(headers or {}), transport=transport)
        self.specs: dict[str, ActionSpec] = {}
        self.templates: dict[str, HttpTemplate] = {}
        for spec in actions.actions.values():
            if spec.execute is not None and spec.execute.connector == name:
                self.specs[spec.name] = spec
                self.templates[spec.name] = compose(spec.execute.template)

    def _send(self, method: str, path: str, *, key: str, body: Any, what: str) -> httpx.Response:
        try:
            return self.client.request(method, path, json=body, headers={"Idempotency-Key": key})
        except httpx.TimeoutException as exc:
            raise TransientError(f"{what}: no answer within {self.client.timeout.read} s", code="connector_timeout") \
                from exc
        except httpx.TransportError as exc:  # refused, reset, DNS, a broken response
            raise TransientError(f"{what}: cannot reach `{self.client.base_url}`: {type(exc).__name__}: {exc}",
                                 code="connector_unreachable") from exc

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Send the action's request; 2xx → its status and (JSON) body."""
        template = self.templates.get(action)
        if template is None:
            raise PermanentError(f"action `{action}` is not bound to connector `{self.name}`",
                                 code="connector_unbound")
        values = checked_params(self.specs[action], params)
        what = f"action `{action}` on `{self.name}`"
        body = render_body(template.body, values) if template.body is not None else None
        r = self._send(template.method, render_path(template.path, values, key), key=key, body=body, what=what)
        code = r.status_code
        if 200 <= code < 300:
            try:
                payload: Any = r.json() if r.content else None
            except ValueError:
                payload = r.text[:MAX_BODY]
            return {"status": code, "body": payload}
        detail = r.text[:300].strip()
        if code >= 500 or code in _TRANSIENT_STATUS:
            raise TransientError(f"{what}: HTTP {code}: {detail}", code="connector_http_unavailable")
        raise PermanentError(f"{what}: HTTP {code}: {detail}", code="connector_http_rejected")

    def status(self, key: str) -> ExecutionStatus:
        """Asks the declared status endpoint: 2xx → done, 404 → not done; without one, unknown."""
        if self.status_endpoint is None:
            return "unknown"
        path = render_path(self.status_endpoint["path"], {}, key)
        r = self._send(self.status_endpoint["method"], path, key=key, body=None, what=f"status of `{key}`")
        if 200 <= r.status_code < 300:
            return "done"
        if r.status_code == 404:
            return "not_done"
        if r.status_code >= 500 or r.status_code in _TRANSIENT_STATUS:
            raise TransientError(f"status of `{key}` on `{self.name}`: HTTP {r.status_code}",
                                 code="connector_http_unavailable")
        return "unknown"

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self.client.close()


# -- load-time checks of a binding ----------------------------------------------------------------

def check_binding(spec: ActionSpec, binding: ExecBinding, sink: DiagnosticSink) -> None:
    """An HTTP binding: a known method, a path whose placeholders are parameters, a body referring to parameters."""
    t, where = binding.template, binding.span
    spans = getattr(t, "key_spans", {})
    binding.check_keys(spec.name, KEYS, sink, help="an HTTP binding has `method`, `path` and `body` "
                       "(a status endpoint belongs to the connector in rulebridge.toml)")
    method = str(t.get("method", "POST")).upper()
    if method not in METHODS:
        sink.error("schema", f"unknown HTTP method `{t.get('method')}` in the binding of `{spec.name}`",
                   span_of(t.get("method"), spans.get("method", where)), help="one of " + ", ".join(METHODS))
    path = t.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        sink.error("schema", f"the HTTP binding of `{spec.name}` needs a `path` starting with `/`",
                   span_of(path, spans.get("path", where)), help="the path is joined to the connector's base_url")
        return
    try:
        fields = path_fields(path)
    except ValueError as exc:
        sink.error("schema", f"the path of `{spec.name}`: {exc}", span_of(path, where))
        fields = []
    for name in fields:
        if name != RESERVED and name not in spec.params:
            help_, sug = suggest_help(name, [*spec.params, RESERVED], f"parameters of `{spec.name}`")
            at = span_of(path, where)
            if isinstance(path, LStr) and path.span is not None:
                at = path.span_at(path.index("{" + name + "}"), len(name) + 2)
            sink.error("unknown_name", f"unknown template parameter `{{{name}}}` in the path of `{spec.name}`",
                       at, help=help_, suggestion=sug)
    if method == "GET" and t.get("body") is not None:
        sink.error("schema", f"a GET request of `{spec.name}` cannot have a body", spans.get("body", where))
    for name, written in body_refs(t.get("body")):
        if name not in spec.params:
            help_, sug = suggest_help(name, spec.params, f"parameters of `{spec.name}`")
            sink.error("unknown_name", f"unknown template parameter `params.{name}` in the body of `{spec.name}`",
                       span_of(written, spans.get("body", where)), help=help_, suggestion=sug)


__all__ = ["HttpConnector", "HttpTemplate", "check_binding", "render_body", "render_path", "segment"]
