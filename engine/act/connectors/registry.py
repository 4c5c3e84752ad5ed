"""The workspace's connectors: declared in `rulebridge.toml`, bound by `rules/actions.yaml`.

    [connectors.kg]                  # the embedded default, present even when not declared
    kind = "kg"

    [connectors.erp]
    kind = "sql"
    url = "postgresql+psycopg://erp@db/erp"
    timeout = 5                      # seconds: lock and statement waits (SQLite: the busy timeout)

    [connectors.crm]
    kind = "http"
    base_url = "https://crm.example/api"
    timeout = 5
    status = {method = "GET", path = "/executions/{key}"}   # optional: makes `status` exact

    [connectors.tickets]
    kind = "python"
    class = "examples.custom_connector:TicketConnector"     # module:Class, see `base.Connector`
    path = ".rulebridge/tickets.jsonl"                      # any other key goes to the class

Every connector also takes `retries` (3), `backoff` (0.2 s, doubling, with jitter),
`max_backoff` (5 s), `breaker_failures` (5) and `breaker_reset` (30 s): `build_connectors`
wraps each in `Resilient` with them.

`check_bindings` is the load-time check (`rulebridge check`): the declarations, and each
action's binding against its connector's template language, with file:line:col diagnostics.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.errors import DiagnosticSink, RulebridgeError, Span, suggest_help
from engine.lang.actions import ActionCatalog
from engine.lang.source import plain

from .base import Connector
from .resilience import Resilient

KINDS = ("kg", "sql", "http", "python")
RESILIENCE = {"retries": 3, "backoff": 0.2, "max_backoff": 5.0, "breaker_failures": 5, "breaker_reset": 30.0}
COMMON = ("kind", *RESILIENCE)
KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind → (required, optional)
    "kg": ((), ()),
    "sql": (("url",), ("timeout",)),
    "http": (("base_url",), ("timeout", "status", "headers")),
    "python": (("class",), ()),  # any other key is an option of the class
}


def _kind(kind: str) -> Any:
    """The module of a connector kind, imported when a workspace uses it (sqlalchemy and httpx
    cost a quarter of a second to import; a workspace on the graph alone never pays it)."""
    return importlib.import_module(f"{__package__}.{kind}")


class ConnectorConfigError(RulebridgeError):
    """A connector declaration that cannot be used (unknown kind, missing url, a class that cannot be loaded)."""

    code = "connector_config"


def declared(config: Any) -> dict[str, dict[str, Any]]:
    """The `[connectors]` table of a `Config` (or of the parsed TOML), with `kg` always present."""
    data = getattr(config, "data", config) or {}
    table = data.get("connectors") or {}
    out = {str(k): dict(v) if isinstance(v, dict) else {"kind": None} for k, v in table.items()}
    out.setdefault("kg", {"kind": "kg"})
    return out


def load_class(ref: str, root: Path | None = None) -> type:
    """`package.module:Class`: imported normally, or from `root/package/module.py` (the workspace)."""
    module_name, _, cls_name = ref.partition(":")
    if not module_name or not cls_name:
        raise ConnectorConfigError(f"`{ref}` is not `module:Class`")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        file = (root or Path.cwd()) / Path(*module_name.split(".")).with_suffix(".py")
        if not file.is_file():
            raise ConnectorConfigError(f"module `{module_name}` not found (nor `{file}`)") from None
        spec = importlib.util.spec_from_file_location(module_name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            raise
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise ConnectorConfigError(f"module `{module_name}` has no class `{cls_name}`")
    return cls


def _number(settings: dict[str, Any], key: str, default: float) -> float:
    v = settings.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConnectorConfigError(f"`{key}` must be a number >= 0, not `{v}`")
    return float(v)


def config_errors(name: str, settings: dict[str, Any]) -> list[str]:
    """What is wrong with one declaration (empty: nothing)."""
    kind = settings.get("kind")
    if kind not in KINDS:
        return [f"connector `{name}`: unknown kind `{kind}` (known: {', '.join(KINDS)})"]
    required, optional = KIND_KEYS[kind]
    out = [f"connector `{name}` ({kind}) needs `{k}`" for k in required if not settings.get(k)]
    if kind != "python":
        out += [f"connector `{name}` ({kind}): unknown key `{k}`"
                for k in sorted(set(settings) - set(COMMON) - set(required) - set(optional))]
    for k in [*RESILIENCE, "timeout"]:
        if k in settings:
            try:
                _number(settings, k, 0)
            except ConnectorConfigError as exc:
                out.append(f"connector `{name}`: {exc}")
    if kind == "http" and settings.get("status") is not None:
        st = settings["status"]
        if not isinstance(st, dict) or not str(st.get("path", "")).startswith("/"):
            out.append(f"connector `{name}`: `status` is `{{method = \"GET\", path = \"/...{{key}}\"}}`")
    return out


def build_connectors(config: Any, store: Any, actions: ActionCatalog, *, root: Path | None = None,
                     prefixes: dict[str, str] | None = None, resilient: bool = True,
                     sleep: Callable[[float], None] | None = None) -> dict[str, Connector]:
    """One connector per declaration, each wrapped in `Resilient` (unless `resilient=False`).

    `config` is the workspace `Config` or the parsed `rulebridge.toml` (a dict with `connectors`).
    Raises `ConnectorConfigError` for a declaration that cannot be used.
    """
    root = root or getattr(config, "root", None)
    if prefixes is None:
        data = getattr(config, "data", config) or {}
        prefixes = dict(data.get("prefixes", {})) if isinstance(data.get("prefixes"), dict) else {}
    out: dict[str, Connector] = {}
    for name, settings in declared(config).items():
        errors = config_errors(name, settings)
        if errors:
            raise ConnectorConfigError("; ".join(errors))
        conn = _build_one(name, settings, store, actions, root=root, prefixes=prefixes)
        if resilient:
            kw = {k: _number(settings, k, d) for k, d in RESILIENCE.items()}
            kw["retries"], kw["breaker_failures"] = int(kw["retries"]), max(1, int(kw["breaker_failures"]))
            conn = Resilient(conn, **kw, **({"sleep": sleep} if sleep else {}))  # type: ignore[arg-type]
        out[name] = conn
    return out


def _build_one(name: str, settings: dict[str, Any], store: Any, actions: ActionCatalog, *, root: Path | None,
               prefixes: dict[str, str]) -> Connector:
    kind = settings["kind"]
    if kind == "kg":
        if store is None:
            raise ConnectorConfigError(f"connector `{name}` (kg) needs the workspace graph, which is not loaded")
        try:
            return _kind("kg").KgConnector(name, store, actions, prefixes=prefixes)
        except ValueError as exc:  # a template that would not be one operation
            raise ConnectorConfigError(f"connector `{name}`: {exc}") from exc
    if kind == "sql":
        return _kind("sql").SqlConnector(name, actions, url=str(settings["url"]),
                                         timeout=_number(settings, "timeout", 5.0))
    if kind == "http":
        return _kind("http").HttpConnector(name, actions, base_url=str(settings["base_url"]),
                                           timeout=_number(settings, "timeout", 5.0), status=settings.get("status"),
                                           headers=settings.get("headers"))
    cls = load_class(str(settings["class"]), root)
    options = {k: v for k, v in settings.items() if k not in (*COMMON, "class")}
    bindings = {spec.name: plain(spec.execute.template) for spec in actions.actions.values()
                if spec.execute is not None and spec.execute.connector == name}
    try:
        conn = cls(name, bindings=bindings, options=options, root=root)
    except (TypeError, ValueError) as exc:
        raise ConnectorConfigError(f"`{settings['class']}` cannot be built as connector `{name}`: {exc}") from exc
    if not isinstance(conn, Connector):
        raise ConnectorConfigError(f"`{settings['class']}` does not implement the connector protocol "
                                   "(`name`, `execute(action, params, *, key)`, `status(key)`)")
    return conn


# -- load-time checks ------------------------------------------------------------------------------

def _section_span(config_file: Path | None, name: str) -> Span | None:
    """Where `[connectors.NAME]` starts in rulebridge.toml (for diagnostics), else the file."""
    if config_file is None:
        return None
    try:
        lines = config_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return Span(str(config_file))
    for i, line in enumerate(lines, 1):
        if line.strip().replace(" ", "") in (f"[connectors.{name}]", f'[connectors."{name}"]'):
            return Span(str(config_file), i, 1, i, len(line) + 1)
    return Span(str(config_file))


def check_bindings(actions: ActionCatalog, config: Any, sink: DiagnosticSink, *, config_file: Path | None = None,
                   prefixes: dict[str, str] | None = None) -> None:
    """Check the connector declarations and every action's `execute:` binding against them."""
    decl = declared(config)
    for name, settings in decl.items():
        for msg in config_errors(name, settings):
            sink.error("config", msg, _section_span(config_file, name))
    checkers: Mapping[str, Callable[..., None]] = {
        "kg": lambda spec, b: _kind("kg").check_binding(spec, b, sink, prefixes=prefixes),
        "sql": lambda spec, b: _kind("sql").check_binding(spec, b, sink),
        "http": lambda spec, b: _kind("http").check_binding(spec, b, sink),
    }
    for spec in actions.actions.values():
        b = spec.execute
        if b is None:
            continue
        if b.connector not in decl:
            help_, sug = suggest_help(b.connector, decl, "connectors")
            sink.error("unknown_name", f"unknown connector `{b.connector}` in the binding of `{spec.name}`",
                       b.connector_span or b.span, help=help_ or "declare it under `[connectors]` in rulebridge.toml",
                       suggestion=sug)
            continue
        check = checkers.get(str(decl[b.connector].get("kind")))
        if check is not None:
            check(spec, b)


__all__ = ["ConnectorConfigError", "KINDS", "build_connectors", "check_bindings", "declared", "load_class"]
