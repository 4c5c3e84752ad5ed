"""`explain` shows the LLM's part in why / why not: why it was asked, what it answered, and what
the gate made of it — in the text rendering and in the JSON."""

from __future__ import annotations

import io

from rich.console import Console

from engine.cli.render import render_explanation
from engine.llm.clients import ScriptedModel
from tests.brightwater import answer, discount_case, engine, escalation


def _text(ex) -> str:
    buf = io.StringIO()
    render_explanation(Console(file=buf, width=200, no_color=True), ex)
    return buf.getvalue()


def test_an_llm_proposal_is_explained_with_its_rationale_and_the_gate_verdict():
    e = engine(ScriptedModel([answer(params={"order": "bwd:SO-3002", "percent": 7}, confidence=0.93,
                                     rationale="loyal customer, margin holds")]))
    ex = e.explain(discount_case("bwd:SO-3002", 7))
    assert ex.decision.source == "llm"
    llm = ex.to_json()["llm"]
    assert llm["asked_because"]["reason"] == "no_rule_matched"
    assert llm["answer"]["kind"] == "proposal" and llm["answer"]["confidence"] == 0.93
    assert llm["verdict"] == {"outcome": ex.decision.outcome, "reason": ex.decision.reason}
    text = _text(ex)
    why = text[text.index("why / why not"):]
    assert "LLM asked because no_rule_matched" in why
    assert "proposed approve_discount" in why and "loyal customer, margin holds" in why
    assert f"gate: {ex.decision.outcome} ({ex.decision.reason})" in why


def test_an_llm_escalation_is_explained():
    e = engine(ScriptedModel([escalation("the margin data is stale")]))
    ex = e.explain(discount_case("bwd:SO-3002", 7))
    assert ex.decision.outcome == "escalate" and ex.decision.reason == "llm_escalated"
    why = _text(ex)
    assert "escalated: the margin data is stale" in why[why.index("why / why not"):]


def test_a_rule_decision_has_no_llm_part():
    e = engine(ScriptedModel([]))
    ex = e.explain({"type": "invoice.received", "payload": {"invoice": "bwd:INV-10004"}, "as_of": "2026-11-01"})
    assert ex.decision.source == "rule" and ex.decision.llm is None
    assert "LLM asked because" not in _text(ex)
