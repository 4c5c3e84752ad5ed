"""The decision path end to end on the mini workspace, through both matchers."""

from __future__ import annotations

import pytest

from engine import CaseError

IRI = "https://example.test/id/"


def case(inv: str) -> dict:
    return {"type": "invoice.received", "payload": {"invoice": f"ex:{inv}"}, "as_of": "2026-11-01"}


@pytest.mark.parametrize("engine_name", ["mini_engine", "mini_reference_engine"])
@pytest.mark.parametrize("inv,outcome,rule,action,params", [
    ("I1", "execute", "ap.approve.small", "approve_invoice", {"approver": IRI + "P2"}),
    ("I2", "escalate", "ap.escalate.mismatch", None, None),
    ("I3", "execute", "ap.hold.blocked", "hold_invoice", {"reason": "vendor blocked"}),
    ("I4", "execute", "ap.duplicate", "hold_invoice", {"reason": "duplicate invoice"}),
    ("I5", "execute", "ap.approve.chain", "approve_invoice", {"approver": IRI + "P3"}),
])
def test_decisions(request, engine_name, inv, outcome, rule, action, params):
    d = request.getfixturevalue(engine_name).decide(case(inv))
    assert d.outcome == outcome
    assert d.deciding == [rule]
    if action:
        assert [p.action for p in d.proposals] == [action]
        for k, v in params.items():
            got = d.proposals[0].params[k]
            assert getattr(got, "iri", got) == v


def test_both_matchers_agree_on_every_rule(mini_engine, mini_reference_engine):
    for inv in ("I1", "I2", "I3", "I4", "I5", "I6"):
        assert mini_engine.decide(case(inv)).matched == mini_reference_engine.decide(case(inv)).matched


def test_decision_carries_revisions_and_provenance(mini_engine):
    d = mini_engine.decide(case("I1"))
    assert d.rule_revision.startswith("mini.ap@")
    assert len(d.graph_revision) == 16
    triples = {(p.subject, p.predicate, p.object) for p in d.reads.provenance()}
    assert (IRI + "I1", "https://example.test/ontology#vendor", IRI + "V1") in triples
    assert (IRI + "V1", "https://example.test/ontology#status", "approved") in triples


def test_within_hops_finds_a_sanctioned_owner_two_hops_away(mini_engine):
    # I2's vendor V2 is owned by H1, owned by the sanctioned H2: two hops.
    env_value = mini_engine.explain(case("I2")).decision.env["sanctioned_link"]
    assert env_value is True


def test_explain_names_first_failing_condition_with_values(mini_engine):
    ex = mini_engine.explain(case("I5"))
    traces = {t.id: t for t in ex.rules}
    assert set(traces) == {r.id for r in ex.ruleset.rules}
    small = traces["ap.approve.small"]
    assert not small.matched
    assert small.failed.text == "case.invoice.amount <= 1000"
    assert small.failed.values == {"case.invoice.amount": 50000.0}
    assert traces["ap.approve.chain"].matched


def test_wrong_payload_field_is_a_case_error_with_suggestion(mini_engine):
    with pytest.raises(CaseError) as err:
        mini_engine.decide({"type": "invoice.received", "payload": {"invoise": "ex:I1"}})
    messages = [d.message for d in err.value.diagnostics]
    assert any("invoise" in m for m in messages)
    assert any(d.help and "`invoice`" in d.help for d in err.value.diagnostics)
    assert err.value.code == "case_invalid"


def test_unknown_case_type(mini_engine):
    with pytest.raises(CaseError) as err:
        mini_engine.decide({"type": "invoice.recieved", "payload": {}})
    assert err.value.code == "no_ruleset"
    assert "did you mean `invoice.received`" in (err.value.diagnostics[0].help or "")
