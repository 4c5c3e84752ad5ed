"""The HTTP connector (`engine/act/connectors/http.py`) and the resilience wrapper, against a real server.

`CRM` is a small API on 127.0.0.1 (ThreadingHTTPServer, port 0) that does what a well-behaved
system of record does with an `Idempotency-Key`: it applies a key once and answers a repeated
key with the first result. Faults are scripted per request (a status, or a delay longer than
the client's timeout). Each test checks the system afterwards: how many requests arrived, and
how many effects were applied (never more than one per key).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.act.connectors.base import PermanentError, TransientError
from engine.act.connectors.http import HttpConnector, segment
from engine.act.connectors.registry import build_connectors
from engine.act.connectors.resilience import CIRCUIT_OPEN, Resilient
from engine.errors import DiagnosticSink
from engine.kg.store import OxigraphStore
from engine.lang.actions import load_actions
from tests.brightwater import workspace

BWD = "https://brightwater.example/id/"
LEAD, EMP = BWD + "LEAD-4001", BWD + "EMP-037"
ASSIGN = {"lead": LEAD, "owner": EMP, "reason": "territory NA-EAST"}

ACTIONS = """
actions:
  assign_lead:
    description: Assign a lead in the CRM.
    params: {lead: Lead, owner: Employee, reason: string, note: {type: string, required: false}}
    execute:
      connector: crm
      method: POST
      path: /leads/{lead}/owner
      body: {owner: params.owner, reason: params.reason, note: params.note, source: rulebridge}
  close_lead:
    description: Close a lead in the CRM.
    params: {lead: Lead}
    execute: {connector: crm, method: DELETE, path: "/leads/{lead}"}
"""


class CRM:
    """The system of record: effects per idempotency key, every request recorded, faults scripted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.effects: dict[str, dict] = {}
        self.applied: list[str] = []  # every application of an effect, in order (a key twice = a bug)
        self.script: list[tuple[str, float]] = []  # ("fail", status) | ("slow", seconds) for the next requests
        self.busy = 0
        crm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                with crm.lock:
                    crm.busy += 1
                try:
                    self._serve()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): what was applied stays applied
                finally:
                    with crm.lock:
                        crm.busy -= 1

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                key = self.headers.get("Idempotency-Key")
                with crm.lock:
                    crm.requests.append({"method": self.command, "path": self.path, "key": key, "body": body})
                    step = crm.script.pop(0) if crm.script and not self.path.startswith("/executions/") else None
                if self.path.startswith("/executions/"):
                    done = urllib.parse.unquote(self.path.rsplit("/", 1)[1]) in crm.effects
                    return self._reply(200 if done else 404, {"done": done})
                if step and step[0] == "fail":
                    return self._reply(int(step[1]), {"error": "scripted"})
                if step and step[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if step and step[0] == "slow":
                    time.sleep(step[1])
                with crm.lock:
                    first = key not in crm.effects
                    if first:
                        crm.applied.append(key)
                        crm.effects[key] = {"method": self.command, "path": self.path, "body": body,
                                            "id": f"A-{len(crm.effects) + 1}"}
                    effect = crm.effects[key]
                return self._reply(201 if first else 200, {"id": effect["id"], "replayed": not first})

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def requests_for(self, key: str) -> int:
        return sum(r["key"] == key for r in self.requests if not r["path"].startswith("/executions/"))

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait for slow handlers still running after the client gave up on them."""
        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            time.sleep(0.01)

    def stop(self) -> None:
        self.wait_idle()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def crm():
    server = CRM()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def actions(tmp_path_factory):
    f = tmp_path_factory.mktemp("http") / "actions.yaml"
    f.write_text(ACTIONS, encoding="utf-8")
    sink = DiagnosticSink()
    catalog = load_actions(f, workspace().schema, sink)
    assert not sink.errors, sink.errors
    return catalog


@pytest.fixture
def connect(actions):
    made: list[HttpConnector] = []

    def make(url: str, **kw) -> HttpConnector:
        c = HttpConnector("crm", actions, base_url=url, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def fast(connector, **kw) -> Resilient:
    return Resilient(connector, **{"retries": 3, "backoff": 0.01, "max_backoff": 0.02, **kw})


# -- the request ------------------------------------------------------------------------------------

def test_a_request_carries_the_key_the_quoted_path_and_the_json_body(crm, connect):
    result = connect(crm.url).execute("assign_lead", ASSIGN, key="k1")
    assert result == {"status": 201, "body": {"id": "A-1", "replayed": False}}
    [req] = crm.requests
    assert req["method"] == "POST" and req["key"] == "k1"
    assert req["path"] == "/leads/" + urllib.parse.quote(LEAD, safe="") + "/owner"
    assert req["body"] == {"owner": EMP, "reason": "territory NA-EAST", "source": "rulebridge"}  # note left out


def test_a_parameter_cannot_change_the_path(crm, connect):
    tricky = "https://brightwater.example/id/../../admin?drop=1#frag"
    connect(crm.url).execute("close_lead", {"lead": tricky}, key="k1")
    [req] = crm.requests
    assert req["method"] == "DELETE"
    prefix, seg = req["path"].rsplit("/", 1)
    assert prefix == "/leads" and urllib.parse.unquote(seg) == tricky
    assert "?" not in req["path"] and "#" not in req["path"]
    assert segment("..") == "%2E%2E" and segment(".") == "%2E" and segment("a/b") == "a%2Fb"


def test_a_repeated_key_is_applied_once_by_the_system(crm, connect):
    c = connect(crm.url)
    c.execute("assign_lead", ASSIGN, key="k1")
    again = c.execute("assign_lead", ASSIGN, key="k1")
    assert again["body"]["replayed"] is True
    assert crm.applied == ["k1"] and crm.requests_for("k1") == 2


# -- faults -----------------------------------------------------------------------------------------

def test_5xx_then_success_is_retried_and_executed_once(crm, connect):
    crm.script = [("fail", 503), ("fail", 500), ("fail", 429)]
    wrapped = fast(connect(crm.url))
    result = wrapped.execute("assign_lead", ASSIGN, key="k1")
    assert result["status"] == 201
    assert crm.requests_for("k1") == 4 and wrapped.attempts == 4
    assert crm.applied == ["k1"]


def test_5xx_beyond_the_retries_is_transient_and_applies_nothing(crm, connect):
    crm.script = [("fail", 502)] * 3
    wrapped = fast(connect(crm.url), retries=2)
    with pytest.raises(TransientError) as info:
        wrapped.execute("assign_lead", ASSIGN, key="k1")
    assert info.value.code == "connector_http_unavailable"
    assert crm.requests_for("k1") == 3 and crm.applied == []


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_is_permanent_and_not_retried(crm, connect, status):
    crm.script = [("fail", status)]
    wrapped = fast(connect(crm.url))
    with pytest.raises(PermanentError) as info:
        wrapped.execute("assign_lead", ASSIGN, key="k1")
    assert info.value.code == "connector_http_rejected" and f"HTTP {status}" in str(info.value)
    assert crm.requests_for("k1") == 1 and crm.applied == []
    assert wrapped.circuit == "closed"  # the system answered: no failure for the breaker


def test_a_redirect_is_not_followed(crm, connect):
    crm.script = [("redirect", 0)]
    with pytest.raises(PermanentError) as info:
        fast(connect(crm.url)).execute("assign_lead", ASSIGN, key="k1")
    assert info.value.code == "connector_http_rejected" and "HTTP 302" in str(info.value)
    assert crm.requests_for("k1") == 1 and crm.applied == []


def test_a_timeout_is_transient_and_the_retry_does_not_apply_twice(crm, connect):
    crm.script = [("slow", 0.6)]
    raw = connect(crm.url, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(TransientError) as info:
        raw.execute("assign_lead", ASSIGN, key="k1")
    assert info.value.code == "connector_timeout" and time.monotonic() - t0 < 0.5
    crm.script = [("slow", 0.6)]
    result = fast(raw).execute("assign_lead", ASSIGN, key="k2")  # slow once, then a quick retry
    assert result["status"] in (200, 201)
    crm.wait_idle()  # the slow handlers finish after the client gave up on them
    assert crm.requests_for("k2") == 2
    assert sorted(crm.applied) == ["k1", "k2"]  # each key applied once, though k2 was sent twice


def test_connection_refused_is_transient_and_retried(connect):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: every connect is refused
    wrapped = fast(connect(f"http://127.0.0.1:{port}"), retries=2)
    with pytest.raises(TransientError) as info:
        wrapped.execute("assign_lead", ASSIGN, key="k1")
    assert info.value.code == "connector_unreachable" and wrapped.attempts == 3


def test_the_circuit_opens_after_repeated_failures_and_refuses_fast(crm, connect):
    crm.script = [("fail", 503)] * 3
    wrapped = Resilient(connect(crm.url), retries=0, backoff=0.01, breaker_failures=3, breaker_reset=0.4)
    for i in range(3):
        with pytest.raises(TransientError) as info:
            wrapped.execute("assign_lead", ASSIGN, key=f"k{i}")
        assert info.value.code == "connector_http_unavailable"
    assert wrapped.circuit == "open"
    seen = len(crm.requests)
    t0 = time.monotonic()
    with pytest.raises(TransientError) as info:
        wrapped.execute("assign_lead", ASSIGN, key="k9")
    assert info.value.code == CIRCUIT_OPEN
    assert time.monotonic() - t0 < 0.05 and len(crm.requests) == seen  # the system was not called
    with pytest.raises(TransientError) as info:
        wrapped.status("k9")
    assert info.value.code == CIRCUIT_OPEN
    time.sleep(0.45)  # the reset timeout passes: one trial call, which succeeds, closes it
    assert wrapped.execute("assign_lead", ASSIGN, key="k9")["status"] == 201
    assert wrapped.circuit == "closed" and crm.applied == ["k9"]


def test_an_open_circuit_is_not_retried(crm, connect):
    crm.script = [("fail", 503)] * 2
    wrapped = Resilient(connect(crm.url), retries=5, backoff=0.01, breaker_failures=2, breaker_reset=30)
    with pytest.raises(TransientError) as info:
        wrapped.execute("assign_lead", ASSIGN, key="k1")
    assert info.value.code == CIRCUIT_OPEN  # tried twice, then refused without a third request
    assert crm.requests_for("k1") == 2 and wrapped.attempts == 2


# -- status -----------------------------------------------------------------------------------------

def test_status_is_unknown_without_a_status_endpoint(crm, connect):
    c = connect(crm.url)
    c.execute("assign_lead", ASSIGN, key="k1")
    assert c.status("k1") == "unknown"


def test_status_asks_the_declared_endpoint(crm, actions):
    conns = build_connectors({"connectors": {"crm": {"kind": "http", "base_url": crm.url, "timeout": 2,
                                                     "status": {"method": "GET", "path": "/executions/{key}"}}}},
                             OxigraphStore.from_files([]), actions)
    crm_conn = conns["crm"]
    try:
        assert crm_conn.status("k1") == "not_done"
        crm_conn.execute("assign_lead", ASSIGN, key="k1")
        assert crm_conn.status("k1") == "done"
        assert crm.requests[-1]["path"] == "/executions/k1" and crm.requests[-1]["method"] == "GET"
    finally:
        crm_conn.close()
