"""The knowledge-graph connector (`engine/act/connectors/kg.py`) and `GraphStore.update`.

Real stores throughout: pyoxigraph in memory and on disk, and rdflib, loaded from a small
Turtle file written per test; the action catalog is the workspace's (`rules/actions.yaml`).
Every refused or failed update is checked against the whole store: not one quad changed.
"""

from __future__ import annotations

import datetime as dt
import gc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.act.connectors.base import PermanentError
from engine.act.connectors.kg import KgConnector
from engine.act.connectors.registry import build_connectors
from engine.case import IRI
from engine.errors import DiagnosticSink
from engine.kg.store import (
    EXECUTED,
    LEDGER_GRAPH,
    META_GRAPH,
    GraphUpdateError,
    OxigraphStore,
    RdflibStore,
    bind_variables,
    execution_iri,
    open_store,
    sparql_variables,
)
from engine.lang.actions import load_actions
from tests.brightwater import ROOT, workspace

BW = "https://brightwater.example/ontology#"
BWD = "https://brightwater.example/id/"
INV1, INV2, EMP = BWD + "INV-1", BWD + "INV-2", BWD + "EMP-1"
AT = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)

DATA = """
@prefix bw: <https://brightwater.example/ontology#> .
@prefix bwd: <https://brightwater.example/id/> .
bwd:INV-1 a bw:Invoice ; bw:status "received" ; bw:amount 420.00 ; bw:invoice_lines bwd:L-1, bwd:L-2 .
bwd:INV-2 a bw:Invoice ; bw:status "approved" ; bw:amount 99.50 .
bwd:EMP-1 a bw:Employee ; bw:active true ; bw:approval_limit 5000.00 .
bwd:LEAD-1 a bw:Lead ; bw:company_name "Redstone" .
bwd:SO-1 a bw:SalesOrder ; bw:status "confirmed" ; bw:total_amount 15021.85 .
"""
BACKENDS = ["oxigraph", "oxigraph-disk", "rdflib"]


@pytest.fixture(scope="module")
def ws():
    return workspace()


def make_store(backend: str, folder: Path):
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "graph.ttl").write_text(DATA, encoding="utf-8")
    return open_store(data, backend=backend, path=folder / "store" if backend == "oxigraph-disk" else None)


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    return make_store(request.param, tmp_path)


def connector(store, ws, actions=None) -> KgConnector:
    return KgConnector("kg", store, actions or ws.actions, prefixes=ws.prefixes, clock=lambda: AT)


def quads(store) -> set[tuple[str, str, str, str]]:
    """Every quad of the store: subject and predicate IRIs, the object's N-Triples form, the graph ('' default)."""
    if isinstance(store, OxigraphStore):
        return {(q.subject.value, q.predicate.value, str(q.object), getattr(q.graph_name, "value", ""))
                for q in store.store}
    return {(str(s), str(p), o.n3(), "" if str(g) == "urn:x-rdflib:default" else str(g))
            for s, p, o, g in store.dataset.quads((None, None, None, None))}


def data(store) -> set[tuple[str, str, str, str]]:
    """The quads of the default graph: the business data, without markers and revisions."""
    return {q for q in quads(store) if q[3] == ""}


def approve(kg, *, key="key-1", invoice=INV1, note=None):
    params = {"invoice": invoice, "approver": EMP, **({"note": note} if note is not None else {})}
    return kg.execute("approve_invoice", params, key=key)


# -- the change, its marker, its revision ---------------------------------------------------------

def test_an_action_changes_the_graph_and_writes_its_marker(store, ws):
    kg = connector(store, ws)
    before = store.revision
    result = approve(kg, note="matched PO")
    assert store.objects(INV1, BW + "status") == ["approved"]
    assert store.objects(INV1, BW + "approved_by") == [IRI(EMP)]
    assert store.objects(INV1, BW + "approval_note") == ["matched PO"]
    assert store.objects(INV1, BW + "status_before_approval") == ["received"]
    assert kg.status("key-1") == "done" and kg.status("key-2") == "not_done"
    assert store.executed("key-1").startswith("2026-11-02T09:30:00")
    marker = [q for q in quads(store) if q[0] == execution_iri("key-1")]
    assert len(marker) == 1 and marker[0][1] == EXECUTED and marker[0][3] == LEDGER_GRAPH
    assert "2026-11-02T09:30:00" in marker[0][2] and "dateTime" in marker[0][2]
    assert result["revision"] == store.revision != before
    assert result["duplicate"] is False


def test_the_revision_is_deterministic_and_persisted_on_disk(tmp_path, ws):
    a, b = make_store("oxigraph", tmp_path / "a"), make_store("oxigraph-disk", tmp_path / "b")
    assert a.revision == b.revision
    approve(connector(a, ws))
    approve(connector(b, ws))
    assert a.revision == b.revision  # same graph, same update, same key → same revision
    c = make_store("oxigraph", tmp_path / "c")
    approve(connector(c, ws), key="another-key")
    assert c.revision != a.revision  # the key is part of it
    revision = b.revision
    del b  # RocksDB: one open handle per store; the reopened one must read what the update wrote
    gc.collect()
    reopened = OxigraphStore.open(tmp_path / "b" / "store")
    assert reopened.revision == revision
    assert reopened.objects(INV1, BW + "status") == ["approved"]
    assert connector(reopened, ws).status("key-1") == "done"


def test_a_repeated_key_changes_nothing(store, ws):
    kg = connector(store, ws)
    first = approve(kg)
    snapshot, revision = quads(store), store.revision
    again = approve(kg)
    assert again["duplicate"] is True and again["revision"] == first["revision"]
    assert quads(store) == snapshot and store.revision == revision


def test_a_where_that_no_longer_matches_writes_nothing(store, ws):
    kg = connector(store, ws)
    snapshot, revision = quads(store), store.revision
    with pytest.raises(PermanentError) as info:
        approve(kg, invoice=INV2)  # already approved: the compare-and-set fails
    assert info.value.code == "connector_no_effect"
    assert quads(store) == snapshot and store.revision == revision
    assert kg.status("key-1") == "not_done"


def test_a_where_that_matches_too_often_writes_nothing(store, ws, tmp_path):
    f = tmp_path / "actions.yaml"
    f.write_text("""
actions:
  tag_invoice_lines:
    description: Tag the lines of an invoice.
    params: {invoice: Invoice, tag: string}
    execute:
      connector: kg
      where: ?invoice bw:invoice_lines ?line .
      insert: ?line bw:tag ?tag .
  tag_all_lines:
    description: Tag the lines of an invoice, however many.
    params: {invoice: Invoice, tag: string}
    execute: {connector: kg, where: "?invoice bw:invoice_lines ?line .", insert: "?line bw:tag ?tag .", max_matches: 5}
""", encoding="utf-8")
    sink = DiagnosticSink()
    actions = load_actions(f, ws.schema, sink)
    assert not sink.errors, sink.errors
    kg = connector(store, ws, actions)
    snapshot = quads(store)
    with pytest.raises(PermanentError) as info:
        kg.execute("tag_invoice_lines", {"invoice": INV1, "tag": "x"}, key="k")
    assert info.value.code == "connector_ambiguous"
    assert quads(store) == snapshot
    kg.execute("tag_all_lines", {"invoice": INV1, "tag": "x"}, key="k")
    assert sorted(store.objects(BWD + "L-1", BW + "tag") + store.objects(BWD + "L-2", BW + "tag")) == ["x", "x"]


def test_the_inverse_restores_the_previous_state(store, ws):
    kg = connector(store, ws)
    original = data(store)
    spec = ws.actions.actions["approve_invoice"]
    params = {"invoice": INV1, "approver": EMP, "note": "n"}
    kg.execute("approve_invoice", params, key="fwd")
    assert data(store) != original
    kg.execute(spec.inverse.action, spec.inverse.derive(params), key="back")
    assert data(store) == original
    assert kg.status("fwd") == kg.status("back") == "done"


# Every action of the workspace, with parameters that fit the graph above.
CALLS = {
    "approve_invoice": {"invoice": INV1, "approver": EMP, "note": "matched"},
    "hold_invoice": {"invoice": INV1, "reason": "possible duplicate"},
    "release_payment": {"invoice": INV2, "amount": 99.5, "method": "ach"},
    "hold_payment": {"invoice": INV1, "reason": "not approved"},
    "approve_discount": {"order": BWD + "SO-1", "percent": 7.5, "note": "volume"},
    "assign_lead": {"lead": BWD + "LEAD-1", "owner": EMP, "reason": "territory"},
}


@pytest.mark.parametrize("action", sorted(CALLS))
def test_every_workspace_action_changes_the_graph_and_its_inverse_undoes_it(store, ws, action):
    inverses = {s.inverse.action for s in ws.actions.actions.values() if s.inverse}
    assert set(CALLS) == set(ws.actions.actions) - inverses  # a new action needs a case here
    kg = connector(store, ws)
    original, params = data(store), CALLS[action]
    kg.execute(action, params, key="forward")
    changed = data(store)
    assert changed != original
    with pytest.raises(PermanentError) as info:  # the same action again, under a new key: nothing left to do
        kg.execute(action, params, key="again")
    assert info.value.code == "connector_no_effect" and data(store) == changed
    inverse = ws.actions.actions[action].inverse
    if inverse is not None:
        kg.execute(inverse.action, inverse.derive(params), key="back")
        assert data(store) == original


# -- injection and values --------------------------------------------------------------------------

HOSTILE = [
    '" ; DROP ALL ; INSERT DATA { <urn:x> <urn:y> "z" } #',
    "'} ; CLEAR DEFAULT #",
    '\\" } ; DROP ALL #',
    "\\u0022 } ; DROP ALL #",
    "\\\\u0022\\U0000005C",
    '"""\'\'\' } } }',
    "line\nbreak\r\ttab",
    "> <urn:evil> <urn:p> <urn:o",
    "?invoice $approver ?note",
    "# not a comment",
]


@pytest.mark.parametrize("note", HOSTILE)
def test_an_injection_attempt_in_a_string_stays_one_literal(store, ws, note):
    kg = connector(store, ws)
    before = data(store)
    approve(kg, note=note)
    assert store.objects(INV1, BW + "approval_note") == [note]
    added, removed = data(store) - before, before - data(store)
    assert {q[:2] for q in added} == {(INV1, BW + p) for p in
                                      ("status", "approved_by", "approval_note", "status_before_approval")}
    assert {q[:2] for q in removed} == {(INV1, BW + "status")}
    assert {q[3] for q in quads(store)} <= {"", LEDGER_GRAPH, META_GRAPH}  # no graph of the attacker's


def test_only_variable_tokens_are_bound():
    """Strings, IRIs and comments of a template keep their `?x`; a path's `?` is no variable."""
    template = ('?x <urn:p?x=1> "?x \\" ?x" , \'?x\' , """?x "" ?x""" . # ?x\n'
                '?x bw:p? ?y . FILTER(?y > 2*?x && ?y+?x < 9)')
    out = bind_variables(template, {"x": "<urn:X>"})
    assert out == ('<urn:X> <urn:p?x=1> "?x \\" ?x" , \'?x\' , """?x "" ?x""" . # ?x\n'
                   '<urn:X> bw:p? ?y . FILTER(?y > 2*<urn:X> && ?y+<urn:X> < 9)')
    assert [name for name, _ in sparql_variables(template)] == ["x", "x", "y", "y", "x", "y", "x"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(note=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
       | st.text(alphabet='\\"\'{}<>?$#;.u0-9aU\n ', max_size=30))
def test_any_string_round_trips_exactly(tmp_path, ws, note):
    store = make_store("oxigraph", tmp_path)
    size = len(store)
    approve(connector(store, ws), note=note)
    assert store.objects(INV1, BW + "approval_note") == [note]
    assert len(store) == size + 4  # approved_by, note, status before, marker (status and revision replaced)


@pytest.mark.parametrize("iri", ["https://brightwater.example/id/INV 1", "urn:x> <urn:y", "not an iri"])
def test_a_reference_that_is_no_iri_is_refused_before_anything_is_written(store, ws, iri):
    kg = connector(store, ws)
    snapshot = quads(store)
    with pytest.raises(PermanentError) as info:
        approve(kg, invoice=iri)
    assert info.value.code == "connector_bad_params"
    assert quads(store) == snapshot


def test_the_store_refuses_a_value_that_is_no_rdf_term(store):
    snapshot = quads(store)
    with pytest.raises(GraphUpdateError) as info:
        store.update("INSERT { ?s <urn:p> <urn:o> } WHERE {}", {"s": IRI("urn:x> <urn:y")}, key="k")
    assert info.value.code == "graph_bad_value"
    with pytest.raises(GraphUpdateError) as info:
        store.update("INSERT { <urn:s> <urn:p> ?o } WHERE {}", {"o": float("nan")}, key="k")
    assert info.value.code == "graph_bad_value" and "`nan` is not a finite number" in str(info.value)
    with pytest.raises(GraphUpdateError) as info:
        store.update("INSERT { <urn:s> <urn:p> ?o } WHERE {}", {"o} ; DROP ALL": "x"}, key="k")
    assert info.value.code == "graph_bad_value" and "is not a variable name" in str(info.value)
    assert quads(store) == snapshot and store.executed("k") is None


def test_numbers_and_dates_are_typed_literals(store):
    store.update("INSERT { <urn:s> <urn:amount> ?a ; <urn:small> ?b ; <urn:count> ?n ; <urn:due> ?d } WHERE {}",
                 {"a": 1234.5, "b": 1e-07, "n": 3, "d": dt.date(2026, 11, 30)}, key="typed")
    assert store.objects("urn:s", "urn:amount") == [1234.5]
    assert store.objects("urn:s", "urn:small") == [1e-07]
    assert store.objects("urn:s", "urn:count") == [3]
    assert store.objects("urn:s", "urn:due") == [dt.date(2026, 11, 30)]


# -- all or nothing ---------------------------------------------------------------------------------

def test_an_update_that_fails_midway_leaves_nothing_behind(tmp_path):
    store = make_store("oxigraph", tmp_path)
    store.update("INSERT DATA { GRAPH <urn:g> { <urn:a> <urn:b> <urn:c> } }", {})
    snapshot, revision = quads(store), store.revision
    with pytest.raises(GraphUpdateError) as info:  # the second operation fails: the graph exists
        store.update("INSERT DATA { <urn:x> <urn:y> <urn:z> } ; CREATE GRAPH <urn:g>", {}, key="k")
    assert info.value.code == "graph_update_failed"
    assert quads(store) == snapshot and store.revision == revision and store.executed("k") is None


def test_an_invalid_update_is_a_typed_error(store):
    snapshot = quads(store)
    with pytest.raises(GraphUpdateError) as info:
        store.update("INSERT { <urn:s> <urn:p> ?o WHERE {}", {"o": "x"}, key="k")
    assert info.value.code == "graph_update_syntax"
    assert quads(store) == snapshot


def test_rdflib_refuses_a_request_of_several_operations(tmp_path):
    store = make_store("rdflib", tmp_path)
    assert isinstance(store, RdflibStore)
    snapshot = quads(store)
    with pytest.raises(GraphUpdateError, match="one update operation") as info:
        store.update("INSERT DATA { <urn:x> <urn:y> <urn:z> } ; INSERT DATA { <urn:a> <urn:b> <urn:c> }", {})
    assert info.value.code == "graph_update_syntax"
    assert quads(store) == snapshot


def test_an_action_not_bound_to_the_connector_is_refused(store, ws):
    with pytest.raises(PermanentError) as info:
        connector(store, ws).execute("no_such_action", {}, key="k")
    assert info.value.code == "connector_unbound"


# -- the next decision sees the change --------------------------------------------------------------

def test_the_next_decision_reads_what_the_connector_wrote():
    """Decide, execute the proposal through the graph connector, decide again: new facts, new revision."""
    from engine.api import Engine
    from engine.workspace import load_workspace

    ws = load_workspace(ROOT)  # a graph of its own: this test writes to it
    engine = Engine(ws, matcher="reference")
    case = {"type": "invoice.received", "payload": {"invoice": "bwd:INV-10001"}, "as_of": "2026-11-01"}
    first = engine.decide(case, review=False, llm=False)
    assert first.outcome == "execute" and first.proposals[0].action == "approve_invoice"
    kg = build_connectors(ws.config, ws.store, ws.actions)["kg"]
    proposal = first.proposals[0]
    kg.execute(proposal.action, proposal.params, key="decision-1")
    second = engine.decide(case, review=False, llm=False)
    assert second.graph_revision == ws.store.revision != first.graph_revision
    status = {p.object for p in second.reads.provenance()
              if p.subject == BWD + "INV-10001" and p.predicate == BW + "status"}
    assert status == {"approved"}
    assert second.outcome == "deny"  # approving it again fails the action's precondition
