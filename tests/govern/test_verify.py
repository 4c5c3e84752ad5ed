"""The verification gate (`engine/govern/verify.py`) on the Brightwater workspace: every check,
for proposals from the LLM, a person and the rules alike."""

from __future__ import annotations

import pytest

from engine.govern.verify import Accept, Deny, Review
from engine.proposals import Proposal
from tests.brightwater import BWD, discount_case, engine


@pytest.fixture(scope="module")
def eng():
    return engine()


def prop(params=None, *, action="approve_discount", source="human", confidence=None) -> Proposal:
    return Proposal(action, {"order": "bwd:SO-3002", "percent": 7} if params is None else params, source,
                    confidence=confidence, rationale="test" if source == "llm" else "")


def codes(verdict) -> list[str]:
    return [r.code for r in verdict.reasons]


def guard_of(eng, guard_id):
    rs = eng.rulesets["crm.discount_approval"]
    return next(g for g in rs.guards if g.id == guard_id)


def test_a_proposal_that_passes_every_check_is_accepted_normalised(eng):
    v = eng.verify(discount_case(), prop())
    assert isinstance(v, Accept)
    assert v.proposal.params == {"order": BWD + "SO-3002", "percent": 7.0}
    assert v.proposal.source == "human"


def test_unknown_action_is_denied(eng):
    v = eng.verify(discount_case(), prop(action="grant_everything"))
    assert isinstance(v, Deny) and codes(v) == ["unknown_action"]
    assert "`grant_everything`" in v.reasons[0].message


def test_action_outside_the_agents_scope_is_denied(eng):
    revoke = {"order": "bwd:SO-3002"}
    v = eng.verify(discount_case(), prop(revoke, action="revoke_discount"))
    assert isinstance(v, Deny) and codes(v) == ["scope"]
    assert "sales-assistant" in v.reasons[0].message and "revoke_discount" in v.reasons[0].message
    # the back-office console may take every action: the same proposal passes its scope check
    ops = eng.verify(discount_case(agent="ops-console"), prop(revoke, action="revoke_discount"))
    assert isinstance(ops, Accept)


def test_scope_and_schema_reasons_are_both_reported(eng):
    v = eng.verify(discount_case(), prop({"invoice": "bwd:SO-3002"}, action="hold_invoice"))
    assert isinstance(v, Deny)
    assert codes(v)[0] == "scope" and "schema" in codes(v)


@pytest.mark.parametrize("params, field", [
    ({"order": "bwd:SO-3002", "percent": "7"}, "percent"),
    ({"order": "bwd:SO-3002", "percent": float("nan")}, "percent"),
    ({"order": "bwd:SO-3002", "percent": 101}, "percent"),
    ({"order": "bwd:SO-3002", "percent": 7, "approved_by": "ceo"}, "approved_by"),
    ({"order": "bwd:C-2038", "percent": 7}, "order"),
    ({"order": "bwd:SO-0000", "percent": 7}, "order"),
    ({"percent": 7}, "order"),
])
def test_schema_violations_are_denied(eng, params, field):
    v = eng.verify(discount_case(), prop(params))
    assert isinstance(v, Deny) and codes(v) == ["schema"]
    assert v.reasons[0].message.startswith(field + ":")


def test_precondition_violation_is_denied(eng):
    # SO-3219 is cancelled: `approve_discount` requires a draft or confirmed order
    v = eng.verify(discount_case(), prop({"order": "bwd:SO-3219", "percent": 7}))
    assert isinstance(v, Deny) and "precondition" in codes(v)
    r = next(r for r in v.reasons if r.code == "precondition")
    assert r.message == "only draft or confirmed orders can be discounted"
    assert r.id == 'params.order.status in ["draft", "confirmed"]'


def test_deny_guard(eng):
    # 20 % on SO-3002 (margin 22.67 %) leaves less than 5 points of margin
    v = eng.verify(discount_case(), prop({"order": "bwd:SO-3002", "percent": 20}))
    assert isinstance(v, Deny) and codes(v) == ["guard_deny"]
    assert v.reasons[0].id == "crm.guard.margin_floor"


def test_deny_guard_on_a_graph_fact(eng):
    # SO-3053: the customer's open balance exceeds its credit limit
    v = eng.verify(discount_case("bwd:SO-3053", 3), prop({"order": "bwd:SO-3053", "percent": 3}))
    assert isinstance(v, Deny) and [r.id for r in v.reasons if r.code == "guard_deny"] == ["crm.guard.credit"]


def test_review_guard(eng):
    # SO-3014 is above 250,000: discounts on it are confirmed by sales leadership
    v = eng.verify(discount_case("bwd:SO-3014", 3), prop({"order": "bwd:SO-3014", "percent": 3}))
    assert isinstance(v, Review) and codes(v) == ["guard_review"]
    assert v.reasons[0].id == "crm.guard.big_order"


def test_guard_that_raises_denies(eng, monkeypatch):
    def boom(env):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(guard_of(eng, "crm.guard.big_order"), "fn", boom)  # even a review guard
    v = eng.verify(discount_case(), prop())
    assert isinstance(v, Deny) and codes(v) == ["guard_error"]
    assert v.reasons[0].id == "crm.guard.big_order" and "division by zero" in v.reasons[0].message


@pytest.mark.parametrize("guard_id, verdict", [("crm.guard.margin_floor", Deny), ("crm.guard.big_order", Review)])
def test_guard_with_an_unknown_value_fires(eng, monkeypatch, guard_id, verdict):
    monkeypatch.setattr(guard_of(eng, guard_id), "fn", lambda env: None)  # a value it needs is missing
    v = eng.verify(discount_case(), prop())
    assert isinstance(v, verdict)
    r = v.reasons[0]
    assert r.id == guard_id and "could not be ruled out" in r.message


def test_guard_only_applies_to_its_actions(eng, monkeypatch):
    monkeypatch.setattr(guard_of(eng, "crm.guard.margin_floor"), "fn", lambda env: True)
    revoke = {"order": "bwd:SO-3002"}
    v = eng.verify(discount_case(agent="ops-console"), prop(revoke, action="revoke_discount"))
    assert isinstance(v, Accept)  # margin_floor is for approve_discount only


def test_agent_limit_sends_to_review(eng):
    # SO-3005 has margin to spare, but the sales agent grants at most 20 %
    v = eng.verify(discount_case("bwd:SO-3005", 25), prop({"order": "bwd:SO-3005", "percent": 25}))
    assert isinstance(v, Review) and codes(v) == ["limit"]
    assert v.reasons[0].message == "the sales agent grants discounts up to 20%"
    # an agent without that limit takes the same proposal
    ops = eng.verify(discount_case("bwd:SO-3005", 25, agent="ops-console"),
                     prop({"order": "bwd:SO-3005", "percent": 25}))
    assert isinstance(ops, Accept)


def test_limit_reads_the_graph(eng):
    # INV-10016 is above 100,000: a rule approves it, but the AP agent's limit sends it to a person
    case = {"type": "invoice.received", "payload": {"invoice": "bwd:INV-10016"}, "as_of": "2026-11-01",
            "agent": "ap-assistant"}
    d = eng.decide(case, llm=False, review=False)
    assert d.source == "rule" and d.outcome == "escalate" and d.reason == "limit"
    v = eng.verify(case, d.proposals[0])
    assert isinstance(v, Review) and codes(v) == ["limit"]


@pytest.mark.parametrize("confidence", [None, 0.0, 0.5, 0.79])
def test_low_confidence_llm_proposal_goes_to_review(eng, confidence):
    v = eng.verify(discount_case(), prop(source="llm", confidence=confidence))
    assert isinstance(v, Review) and codes(v) == ["low_confidence"]


@pytest.mark.parametrize("confidence", [0.8, 1.0])
def test_confident_llm_proposal_is_accepted(eng, confidence):
    assert isinstance(eng.verify(discount_case(), prop(source="llm", confidence=confidence)), Accept)


def test_confidence_only_matters_for_the_llm(eng):
    assert isinstance(eng.verify(discount_case(), prop(source="human", confidence=0.1)), Accept)


def test_deny_wins_over_review(eng):
    # 25 % on SO-3002: over the agent's limit (review) AND below the margin floor (deny)
    v = eng.verify(discount_case("bwd:SO-3002", 25), prop({"order": "bwd:SO-3002", "percent": 25}, source="llm",
                                                          confidence=0.1))
    assert isinstance(v, Deny)
    assert codes(v) == ["guard_deny"]
    assert sorted(r.code for r in v.also) == ["limit", "low_confidence"]  # kept for the record


def test_deny_wins_over_a_review_guard(eng):
    # SO-3058 is shipped (no discount any more) and large (a review guard)
    v = eng.verify(discount_case("bwd:SO-3058", 3), prop({"order": "bwd:SO-3058", "percent": 3}))
    assert isinstance(v, Deny) and "precondition" in codes(v)
    assert [r.code for r in v.also] == ["guard_review"]


def test_every_failing_check_is_named(eng):
    # SO-3140 is cancelled and its customer is over its credit limit; 30 % is over the agent's limit
    v = eng.verify(discount_case("bwd:SO-3140", 30), prop({"order": "bwd:SO-3140", "percent": 30}))
    assert isinstance(v, Deny)
    assert {"precondition", "guard_deny"} <= set(codes(v))
    assert "limit" in [r.code for r in v.also]


# -- rule proposals pass the same gate ------------------------------------------------------------

def test_rule_whose_consequence_violates_a_precondition_is_denied(eng):
    # INV-10007: a rule approves it, but the invoice's status forbids `approve_invoice`
    case = {"type": "invoice.received", "payload": {"invoice": "bwd:INV-10007"}, "as_of": "2026-11-01"}
    d = eng.decide(case, llm=False, review=False)
    assert d.source == "rule" and d.deciding
    assert d.outcome == "deny" and d.reason == "precondition"
    assert [c.code for c in d.checks] == ["precondition"]
    assert d.proposals and d.proposals[0].source == "rule"  # kept for the record, not executed
    v = eng.verify(case, d.proposals[0])
    assert isinstance(v, Deny) and codes(v) == ["precondition"]


def test_rule_proposal_denied_by_a_guard(eng):
    d = eng.decide(discount_case("bwd:SO-3053", 10, agent="ops-console"), llm=False, review=False)
    assert d.source == "rule" and d.outcome == "deny" and d.reason == "guard_deny"
    assert [g.id for g in d.guards] == ["crm.guard.credit"]


def test_rule_proposal_and_the_same_proposal_from_a_person_get_the_same_verdict(eng):
    case = discount_case("bwd:SO-3004", 12, agent="ops-console")
    d = eng.decide(case, llm=False, review=False)
    assert d.source == "rule" and d.outcome == "deny"
    p = d.proposals[0]
    human = eng.verify(case, Proposal(p.action, p.params, "human"))
    rule = eng.verify(case, p)
    assert type(human) is type(rule) is Deny and codes(human) == codes(rule)


def test_verify_does_not_raise_on_garbage(eng):
    for params in (None, [], "x", {"order": {"$ne": None}, "percent": []}):
        v = eng.verify(discount_case(), Proposal("approve_discount", params, "agent"))  # type: ignore[arg-type]
        assert isinstance(v, Deny)
