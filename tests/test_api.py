"""The facade (`engine/api.py`) on the mini fixture workspace, as an application uses it.

The fixture data (tests/fixtures/mini/knowledge_graph/data/mini.ttl), worked out by hand:
I1 (A-1, V1 approved, 420, lines received) → approved by P2, the requester P1's manager;
I2 (B-7, V2, 5000, 10 billed / 4 received) → escalated; I3 (C-1, V3 blocked) → held;
I4 and I6 (both D-1 from V1) are duplicates of each other → held; I5 (Z-9, 50000) → approved
by P3, the first in P1's chain whose limit covers it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile

import pytest
from rdflib import Graph, Literal, URIRef

from engine import Case, CaseError, Decision, Engine, LoadError
from engine.kg.store import data_files, files_revision
from tests.rulesets import EX, MINI, ONT

AS_OF = "2026-11-01"
RULES = ["ap.duplicate", "ap.approve.small", "ap.approve.chain", "ap.hold.blocked", "ap.escalate.mismatch"]


def case(inv: str, **extra) -> dict:
    return {"type": "invoice.received", "payload": {"invoice": f"ex:{inv}"}, "as_of": AS_OF, **extra}


@pytest.fixture(scope="module", params=["durable", "index", "reference"])
def engine(request) -> Engine:
    ids = iter(range(10**9))
    state = tempfile.mkdtemp(prefix="rulebridge-api-")  # its own state: the ids repeat per engine
    return Engine.open(MINI, matcher=request.param, clock=lambda: dt.date(2026, 12, 24),
                       new_id=lambda: f"dec-{next(ids)}", state=f"sqlite:///{state}/state.db")


# -- opening ------------------------------------------------------------------------------------------

def test_open_compiles_the_workspace(engine):
    assert set(engine.rulesets) == {"mini.ap"}
    rs = engine.rulesets["mini.ap"]
    assert [r.id for r in rs.rules] == RULES
    assert [g.id for g in rs.guards] == ["ap.guard.sanctioned"]
    assert rs.case_type == "invoice.received" and rs.hit_policy == "priority"
    engine.warm()
    assert engine.matcher_for(rs) is engine.matcher_for(rs)  # compiled once, reused
    assert engine.matcher_for(rs).name == engine.matcher_kind


def test_open_a_broken_workspace_raises_load_error_with_every_diagnostic(tmp_path):
    import shutil

    shutil.copytree(MINI, tmp_path / "ws")
    f = tmp_path / "ws" / "rules" / "ap.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("vendor.status ==", "vendor.staus ==")
                 .replace("action: hold_invoice", "action: hold_invoce", 1), encoding="utf-8")
    with pytest.raises(LoadError) as err:
        Engine.open(tmp_path / "ws")
    codes = sorted(d.code for d in err.value.diagnostics)
    assert codes == ["unknown_action", "unknown_property", "unknown_property", "unknown_property"]
    assert all(d.span and d.span.file == str(f) for d in err.value.diagnostics)
    assert any(d.help == "did you mean `status`?" for d in err.value.diagnostics)


# -- deciding ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inv,outcome,matched,deciding,action,params,message", [
    ("I1", "execute", ["ap.approve.small", "ap.approve.chain"], "ap.approve.small", "approve_invoice",
     {"invoice": EX + "I1", "approver": EX + "P2", "note": "auto-approved"}, ""),
    ("I2", "escalate", ["ap.escalate.mismatch"], "ap.escalate.mismatch", None, None,
     "quantity billed exceeds quantity received"),
    ("I3", "execute", ["ap.hold.blocked"], "ap.hold.blocked", "hold_invoice",
     {"invoice": EX + "I3", "reason": "vendor blocked"}, ""),
    ("I4", "execute", ["ap.duplicate", "ap.approve.small", "ap.approve.chain"], "ap.duplicate", "hold_invoice",
     {"invoice": EX + "I4", "reason": "duplicate invoice"}, ""),
    ("I5", "execute", ["ap.approve.chain"], "ap.approve.chain", "approve_invoice",
     {"invoice": EX + "I5", "approver": EX + "P3"}, ""),
    ("I6", "execute", ["ap.duplicate", "ap.approve.small", "ap.approve.chain"], "ap.duplicate", "hold_invoice",
     {"invoice": EX + "I6", "reason": "duplicate invoice"}, ""),
])
def test_decide_each_fixture_invoice(engine, inv, outcome, matched, deciding, action, params, message):
    d = engine.decide(case(inv))
    assert isinstance(d, Decision)
    assert (d.outcome, d.source, d.reason) == (outcome, "rule", "rule")
    assert d.matched == matched
    assert d.deciding == [deciding]
    assert d.message == message
    assert d.guards == []
    if action is None:
        assert d.proposals == []
    else:
        [p] = d.proposals
        assert (p.action, p.rule) == (action, deciding)
        assert p.to_json()["params"] == params
    assert d.ruleset == "mini.ap"
    assert d.matcher == engine.matcher_kind


def test_the_three_matchers_decide_identically():
    engines = [Engine.open(MINI, matcher=kind) for kind in ("durable", "index", "reference")]
    for inv in ("I1", "I2", "I3", "I4", "I5", "I6", "I7"):
        decisions = [e.decide(case(inv)).to_json() for e in engines]
        assert [d.pop("matcher") for d in decisions] == ["durable", "index", "reference"]
        for d in decisions:
            d.pop("id")
        assert decisions[0] == decisions[1] == decisions[2]


def test_the_three_matchers_decide_the_demo_stream_identically():
    """The demo's sampled cases on the Brightwater workspace (every ruleset), rules only."""
    from engine.demo import sample_cases
    from tests import brightwater

    engines = [brightwater.engine(None, matcher=kind) for kind in ("durable", "index", "reference")]
    cases = sample_cases(brightwater.workspace(), 240)
    outcomes = set()
    for c in cases:
        decisions = [e.decide(c, llm=False, review=False).to_json() for e in engines]
        for d in decisions:
            d.pop("id"), d.pop("matcher")
        assert decisions[0] == decisions[1] == decisions[2], c
        outcomes.add(decisions[0]["outcome"])
    assert outcomes >= {"execute", "deny", "escalate"}


def test_an_invoice_without_an_amount_escalates(engine):
    d = engine.decide(case("I7"))
    assert (d.outcome, d.source, d.reason, d.matched, d.deciding) == ("escalate", "none", "no_rule_matched", [], [])
    assert d.message == "no rule decides this case"


@pytest.mark.parametrize("inv, code, text", [
    ("NOT_IN_GRAPH", "case_unknown_entity", ("`payload.invoice`: `https://example.test/id/NOT_IN_GRAPH` is not in the "
      "graph")),
    ("V1", "case_wrong_class", "`payload.invoice`: `https://example.test/id/V1` is of class `Vendor`, not `Invoice`"),
])
def test_a_case_naming_an_entity_the_graph_does_not_have_as_declared_is_refused(engine, inv, code, text):
    """Checked before any rule runs: a vendor given as an invoice was decided (and could be
    executed) on missing facts before."""
    with pytest.raises(CaseError) as info:
        engine.decide(case(inv))
    assert info.value.code == code and text in str(info.value)


def test_bidi_controls_are_refused_in_case_iris(engine):
    with pytest.raises(CaseError) as info:
        engine.decide({"type": "invoice.received", "payload": {"invoice": "https://example.test/id/I\u202e1"}})
    assert info.value.code == "case_invalid" and "is not an IRI" in str(info.value)


def test_decide_accepts_a_case_object_and_uses_the_injected_clock_and_ids(engine):
    d = engine.decide(Case("invoice.received", {"invoice": "ex:I1"}))
    assert d.as_of == "2026-12-24"  # no as_of: the injected clock
    assert d.id.startswith("dec-")
    assert engine.decide(case("I1")).as_of == AS_OF
    assert engine.decide(case("I1", as_of="2026-11-01T09:30:00Z")).as_of == AS_OF


def test_decision_json_is_versioned_and_plain(engine):
    d = engine.decide(case("I1", id="case-7", agent="svc-ap"))
    j = d.to_json(engine.rulesets["mini.ap"])
    assert j["version"] == "DecisionV1"
    assert j["case"] == {"type": "invoice.received", "payload": {"invoice": "ex:I1"}, "id": "case-7",
                         "agent": "svc-ap", "as_of": AS_OF}
    assert j["proposals"] == [{"action": "approve_invoice", "rule": "ap.approve.small", "source": "rule",
                               "params": {"invoice": EX + "I1", "approver": EX + "P2", "note": "auto-approved"}}]
    assert j["facts"]["case.invoice.amount"] == 420.0
    assert j["facts"]["case.invoice.vendor.status"] == "approved"
    assert j["facts"]["duplicate"] is False
    assert j["facts"]["approvers"] == [EX + "P2", EX + "P3"]
    assert j["facts"]["sanctioned_link"] is False
    assert j["queries"] == [{"query": "duplicate_invoice", "bindings": {"invoice": EX + "I1"}, "result": False}]
    import json

    json.dumps(j)  # JSON-native throughout


# -- revisions and provenance ----------------------------------------------------------------------------

def test_decisions_carry_rule_and_graph_revisions(engine):
    d = engine.decide(case("I1"))
    source = (MINI / "rules" / "ap.yaml").read_bytes()
    assert d.rule_revision == "mini.ap@" + hashlib.sha256(source).hexdigest()[:12]
    assert d.graph_revision == files_revision(data_files(MINI / "knowledge_graph" / "data"))
    assert d.graph_revision == engine.ws.store.revision


@pytest.fixture(scope="module")
def fixture_triples() -> set[tuple[str, str, str]]:
    g = Graph()
    for f in data_files(MINI / "knowledge_graph" / "data"):
        g.parse(str(f))
    out = set()
    for s, p, o in g:
        out.add((str(s), str(p), str(o) if isinstance(o, (URIRef, Literal)) else o.n3()))
    return out


@pytest.mark.parametrize("inv", [
    "I1", "I3", "I4", "I5", "I6",
    "I2",
])
def test_provenance_triples_exist_in_the_fixture_data(engine, fixture_triples, inv):
    d = engine.decide(case(inv))
    prov = d.reads.provenance()
    assert prov
    missing = [(p.subject, p.predicate, p.object) for p in prov
               if (p.subject, p.predicate, p.object) not in fixture_triples]
    assert missing == []


def test_provenance_covers_the_facts_the_deciding_rule_read(engine):
    d = engine.decide(case("I1"))
    triples = {(p.subject, p.predicate, p.object) for p in d.reads.provenance()}
    assert {(EX + "I1", ONT + "vendor", EX + "V1"), (EX + "V1", ONT + "status", "approved"),
            (EX + "I1", ONT + "amount", "420.0"), (EX + "I1", ONT + "lines", EX + "I1L1"),
            (EX + "I1L1", ONT + "quantity", "2.0"), (EX + "I1L1", ONT + "received", "2.0"),
            (EX + "P1", ONT + "reports_to", EX + "P2"), (EX + "P2", ONT + "limit", "10000.0")} <= triples
    # each (entity, property) is read once per case
    reads = [(s, p) for s, p, _v in d.reads.items]
    assert len(reads) == len(set(reads))


# -- explaining ------------------------------------------------------------------------------------------

def test_explain_traces_every_rule(engine):
    ex = engine.explain(case("I1"))
    assert [t.id for t in ex.rules] == RULES
    by_id = {t.id: t for t in ex.rules}
    assert [t.id for t in ex.rules if t.matched] == ex.decision.matched
    small = by_id["ap.approve.small"]
    assert small.matched and small.failed is None
    assert [c.text for c in small.conditions] == [
        "case.invoice.amount <= 1000", 'case.invoice.vendor.status == "approved"',
        "all(l.quantity <= l.received for l in case.invoice.lines)"]
    assert all(c.result is True for c in small.conditions)
    assert small.conditions[0].values == {"case.invoice.amount": 420.0}
    # a multi-valued property has no order in RDF
    assert sorted(small.conditions[2].values["case.invoice.lines"]) == [EX + "I1L1", EX + "I1L2"]
    assert small.description == "Small matched invoices are approved by the requester's manager."
    assert small.priority == 10


@pytest.mark.parametrize("inv,rule,text,result,values,line", [
    ("I5", "ap.approve.small", "case.invoice.amount <= 1000", False, {"case.invoice.amount": 50000.0}, 24),
    ("I3", "ap.approve.small", 'case.invoice.vendor.status == "approved"', False,
     {"case.invoice.vendor.status": "blocked"}, 25),
    ("I2", "ap.approve.chain", "all(l.quantity <= l.received for l in case.invoice.lines)", False,
     {"case.invoice.lines": [EX + "I2L1"]}, 38),
    ("I1", "ap.duplicate", "duplicate", False, {"duplicate": False}, 18),
    ("I1", "ap.hold.blocked", 'case.invoice.vendor.status == "blocked"', False,
     {"case.invoice.vendor.status": "approved"}, 45),
    ("I7", "ap.approve.small", "case.invoice.amount <= 1000", None, {"case.invoice.amount": None}, 24),
])
def test_explain_names_the_first_failing_condition_with_its_values(engine, inv, rule, text, result, values, line):
    ex = engine.explain(case(inv))
    t = {t.id: t for t in ex.rules}[rule]
    assert not t.matched
    assert (t.failed.text, t.failed.result, t.failed.values, t.failed.line) == (text, result, values, line)
    assert t.conditions[-1] is t.failed  # evaluation stops at the first failure


def test_explanation_json(engine):
    j = engine.explain(case("I3")).to_json()
    assert j["outcome"] == "execute" and j["rules_deciding"] == ["ap.hold.blocked"]
    rows = {r["rule"]: r for r in j["explanation"]}
    assert set(rows) == set(RULES)
    assert rows["ap.hold.blocked"]["matched"] is True and rows["ap.hold.blocked"]["failed"] is None
    assert rows["ap.approve.small"]["failed"] == {
        "condition": 'case.invoice.vendor.status == "approved"', "result": False,
        "values": {"case.invoice.vendor.status": "blocked"}, "line": 25, "witness": None}


# -- errors ---------------------------------------------------------------------------------------------

def test_wrong_payload_field_is_case_invalid_with_did_you_mean(engine):
    with pytest.raises(CaseError) as err:
        engine.decide({"type": "invoice.received", "payload": {"invoise": "ex:I1"}})
    e = err.value
    assert e.code == "case_invalid"
    assert [(d.code, d.message, d.help) for d in e.diagnostics] == [
        ("case_invalid", "`payload.invoice`: is required", "give a Invoice"),
        ("case_invalid", "`payload.invoise`: is not a field of this case", "did you mean `invoice`?"),
    ]


@pytest.mark.parametrize("payload,message", [
    ({"invoice": 5}, "`payload.invoice`: must be the IRI of a `Invoice`"),
    ({"invoice": ""}, "`payload.invoice`: must be the IRI of a `Invoice`"),
    ({}, "`payload.invoice`: is required"),
    ({"invoice": None}, "`payload.invoice`: is required"),
    ({"invoice": "ex:I1", "amount": 3}, "`payload.amount`: is not a field of this case"),
])
def test_payloads_that_do_not_fit_the_case_schema(engine, payload, message):
    with pytest.raises(CaseError) as err:
        engine.decide({"type": "invoice.received", "payload": payload})
    assert err.value.code == "case_invalid"
    assert message in [d.message for d in err.value.diagnostics]


@pytest.mark.parametrize("bad", [
    "not a case", None, [], {"payload": {}}, {"type": 5, "payload": {}},
    {"type": "invoice.received", "payload": [1]},
    {"type": "invoice.received", "payload": {}, "amount": 5},
])
def test_malformed_case_envelopes(engine, bad):
    with pytest.raises(CaseError) as err:
        engine.decide(bad)
    assert err.value.code == "case_invalid"


def test_unknown_case_type_is_no_ruleset_with_did_you_mean(engine):
    with pytest.raises(CaseError) as err:
        engine.decide({"type": "invoice.recieved", "payload": {"invoice": "ex:I1"}})
    assert err.value.code == "no_ruleset"
    [d] = err.value.diagnostics
    assert (d.code, d.message, d.help) == ("no_ruleset", "no ruleset decides case type `invoice.recieved`",
                                           "did you mean `invoice.received`?")


@pytest.mark.parametrize("as_of", ["yesterday", "2026-13-01", 20261101])
def test_invalid_as_of_is_case_invalid(engine, as_of):
    with pytest.raises(CaseError) as err:
        engine.decide(case("I1", as_of=as_of))
    assert err.value.code == "case_invalid"


def test_text_that_is_not_an_iri_is_case_invalid(engine):
    with pytest.raises(CaseError) as err:
        engine.decide(case("I1") | {"payload": {"invoice": "not an iri at all"}})
    assert err.value.code == "case_invalid"


def test_the_matcher_comes_from_the_config_and_the_environment(tmp_path, monkeypatch):
    import shutil

    from engine.errors import LoadError
    from engine.match.durable import DurableMatcher

    shutil.copytree(MINI, tmp_path / "ws")
    ws = tmp_path / "ws"
    monkeypatch.delenv("RULEBRIDGE_MATCHER", raising=False)
    assert Engine.open(ws).matcher_kind == "index"  # the default
    toml = ws / "rulebridge.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + '\n[rules]\nmatcher = "durable"\n', encoding="utf-8")
    e = Engine.open(ws)
    assert e.matcher_kind == "durable" and isinstance(e.matcher_for(next(iter(e.ws.rulesets.values()))), DurableMatcher)
    assert e.decide(case("I1")).deciding == ["ap.approve.small"]
    monkeypatch.setenv("RULEBRIDGE_MATCHER", "reference")
    assert Engine.open(ws).matcher_kind == "reference"
    assert Engine.open(ws, matcher="index").matcher_kind == "index"  # the caller's choice wins
    monkeypatch.setenv("RULEBRIDGE_MATCHER", "rete")
    with pytest.raises(LoadError) as exc:
        Engine.open(ws)
    assert exc.value.diagnostics[0].code == "config" and "'rete'" in exc.value.diagnostics[0].message


def test_warm_freezes_what_is_loaded_only_when_asked():
    import gc

    e = Engine.open(MINI)
    gc.unfreeze()
    try:
        e.warm()
        assert gc.get_freeze_count() == 0
        e.warm(freeze=True)
        assert gc.get_freeze_count() > 0  # the workspace's objects are out of the collector's way
    finally:
        gc.unfreeze()
