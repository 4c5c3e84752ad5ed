"""The remote SPARQL backend against a real `oxigraph` server (the PyPI package, started here on
a free local port with the Brightwater data): the same rules decide the same way as on the
embedded store, actions execute through it exactly once, and an endpoint that is down fails
closed with a clear code. With RULEBRIDGE_REQUIRE_SPARQL=1 (set by `.ci/run`) a missing server
binary fails instead of skipping."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.case import IRI
from engine.kg.remote import GraphUnavailable, SparqlStore
from engine.workspace import load_workspace
from tests.brightwater import BWD, ROOT, engine, workspace

pytestmark = pytest.mark.slow

BW = "https://brightwater.example/ontology#"
DATA = ROOT / "knowledge_graph" / "data" / "brightwater.ttl"


def _binary() -> str | None:
    found = shutil.which("oxigraph") or str(Path(sys.executable).parent / "oxigraph")
    return found if Path(found).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    """A fresh in-memory `oxigraph serve` holding the workspace data; yields its base URL."""
    exe = _binary()
    if exe is None:
        if os.environ.get("RULEBRIDGE_REQUIRE_SPARQL"):
            pytest.fail("the `oxigraph` server binary is not installed (pip install oxigraph)")
        pytest.skip("the `oxigraph` server binary is not installed (pip install oxigraph)")
    port = _free_port()
    proc = subprocess.Popen([exe, "serve", "--bind", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.post(f"{base}/query", content=b"ASK {}", headers={"Content-Type": "application/sparql-query"})
                break
            except httpx.TransportError:
                time.sleep(0.05)
        r = httpx.post(f"{base}/store?default", content=DATA.read_bytes(), headers={"Content-Type": "text/turtle"},
                       timeout=60)
        assert r.status_code in (200, 201, 204), r.text
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def remote_ws(server, monkeypatch):
    # The backend is passed, not set in the environment: the shared test workspace
    # (`tests.brightwater.workspace`, cached) must stay the embedded one.
    monkeypatch.setenv("RULEBRIDGE_GRAPH_QUERY_URL", f"{server}/query")
    monkeypatch.setenv("RULEBRIDGE_GRAPH_UPDATE_URL", f"{server}/update")
    ws = load_workspace(ROOT, backend="sparql")
    assert not ws.errors, ws.errors
    assert ws.store.backend == "sparql"
    yield ws
    ws.store.close()


def _summary(d) -> tuple:
    return (d.outcome, d.reason, d.source, d.matched, d.deciding, [(p.action, p.params) for p in d.proposals],
            [g.id for g in d.guards])


def test_the_same_rules_decide_the_same_on_the_remote_graph(remote_ws):
    from engine.demo import sample_cases

    local = engine(None, ws=load_workspace(ROOT, backend="oxigraph"))
    assert local.ws.store.backend == "oxigraph" and remote_ws.store.backend == "sparql"
    remote = engine(None, ws=remote_ws)
    cases = sample_cases(local.ws, 120)
    differ = []
    for c in cases:
        a, b = local.decide(c, llm=False, review=False), remote.decide(c, llm=False, review=False)
        if (_summary(a) != _summary(b)
                or sorted(map(str, a.reads.provenance())) != sorted(map(str, b.reads.provenance()))):
            differ.append((c, _summary(a), _summary(b)))
    assert differ == []
    assert {d.outcome for d in (local.decide(c, llm=False, review=False) for c in cases)} >= {"execute", "deny",
                                                                                              "escalate"}


def test_an_action_executes_once_on_the_remote_graph_and_the_next_decision_sees_it(remote_ws):
    e = engine(None, ws=remote_ws)
    before = remote_ws.store.revision
    for n in range(10001, 10100):
        d = e.decide({"type": "invoice.received", "payload": {"invoice": f"bwd:INV-{n}"}, "as_of": "2026-11-01"},
                     llm=False)
        if d.outcome == "execute" and d.proposals[0].action == "approve_invoice":
            break
    else:
        raise AssertionError("no invoice the rules approve")
    res = e.execute(d.id)
    assert res.outcome == "done"
    assert remote_ws.store.objects(f"{BWD}INV-{n}", BW + "status") == ["approved"]
    key = res.steps[0]["key"]
    assert remote_ws.store.executed(key) is not None and remote_ws.store.revision != before
    assert e.execute(d.id).outcome == "done"  # the ledger answers; nothing runs twice
    # A second engine on the same endpoint (another process, say) reads the change.
    other = SparqlStore(remote_ws.store.query_url, remote_ws.store.update_url)
    try:
        assert other.objects(f"{BWD}INV-{n}", BW + "status") == ["approved"]
        assert other.revision == remote_ws.store.revision
    finally:
        other.close()
    again = e.decide({"type": "invoice.received", "payload": {"invoice": f"bwd:INV-{n}"}, "as_of": "2026-11-01"},
                     llm=False)
    assert again.graph_revision == remote_ws.store.revision


def test_an_update_that_matches_nothing_writes_nothing(remote_ws):
    st = remote_ws.store
    before = st.revision
    out = st.update(f"DELETE {{ ?i <{BW}status> ?s }} INSERT {{ ?i <{BW}status> \"approved\" }} "
                    f"WHERE {{ ?i <{BW}status> ?s . FILTER(?s = \"no-such-status\") }}",
                    {"i": IRI(f"{BWD}INV-10001")}, key="k-none",
                    where=f"?i <{BW}status> ?s . FILTER(?s = \"no-such-status\")")
    assert not out.applied and out.matches == 0
    assert st.revision == before and st.executed("k-none") is None


def test_hostile_values_stay_one_term(remote_ws):
    st = remote_ws.store
    query = (ROOT / "knowledge_graph" / "queries" / "territory_reps.rq").read_text()
    assert st.select(query, {"region": 'NA-EAST" } ?s ?p ?o . { "'}) == []
    assert st.select(query, {"region": "NA-EAST"})
    n = len(st)
    hostile = 'x" } ; DROP ALL ; INSERT DATA { <urn:a> <urn:b> "c'
    out = st.update(f"INSERT {{ ?i <{BW}note> ?note }} WHERE {{}}", {"i": IRI(f"{BWD}INV-10001"), "note": hostile})
    assert out.applied and len(st) == n + 1
    assert st.objects(f"{BWD}INV-10001", BW + "note") == [hostile]


def test_a_down_endpoint_is_a_clear_load_error_and_a_transient_fault(server, monkeypatch):
    port = _free_port()  # nothing listens there
    monkeypatch.setenv("RULEBRIDGE_GRAPH_QUERY_URL", f"http://127.0.0.1:{port}/query")
    ws = load_workspace(ROOT, backend="sparql")
    assert [d.code for d in ws.errors] == ["graph_unavailable"]
    assert "cannot reach the graph" in ws.errors[0].message
    SparqlStore(f"{server}/query", f"{server}/update").close()  # the endpoint now has its revision
    st = SparqlStore(f"{server}/query", f"http://127.0.0.1:{port}/update", timeout=2)
    try:
        with pytest.raises(GraphUnavailable) as info:
            st.update(f"INSERT DATA {{ <{BWD}x> <{BW}note> \"y\" }}", {})
        assert isinstance(info.value, OSError)  # the graph connector retries it with back-off
        assert info.value.code == "graph_unavailable"
    finally:
        st.close()


def test_an_unknown_backend_is_a_config_error(monkeypatch):
    monkeypatch.setenv("RULEBRIDGE_GRAPH_BACKEND", "sparq")
    ws = load_workspace(ROOT)
    assert [(d.code, d.help) for d in ws.errors] == [("config", "did you mean `sparql`?")]


def test_the_backend_setting_from_the_environment(monkeypatch):
    workspace()  # the shared embedded workspace is loaded (and cached) before the variable is set
    from tests.conftest import MINI

    monkeypatch.setenv("RULEBRIDGE_GRAPH_BACKEND", "rdflib")
    assert load_workspace(MINI).store.backend == "rdflib"
    assert workspace().store.backend == "oxigraph"
