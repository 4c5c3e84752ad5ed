"""What a decision records (`engine/audit/trail.py`): real decisions of the mini workspace become
events that append in one transaction, verify, and read back as a trace."""

from __future__ import annotations

import dataclasses

import typer
from typer.testing import CliRunner

from engine.audit.trail import STEPS, decision_events, execution_event, review_event, who_decided
from engine.cli.audit_cmd import audit_app


def case(inv: str) -> dict:
    return {"type": "invoice.received", "payload": {"invoice": f"ex:{inv}"}, "as_of": "2026-11-01"}


def test_a_rule_decision_records_its_steps(mini_engine, make_log):
    d = mini_engine.decide(case("I1"), review=False)
    rs = mini_engine.ws.rulesets[d.ruleset]
    items = decision_events(d, rs)
    assert [step for _id, step, _agent, _data in items] == ["received", "facts", "matched", "verified", "decided"]
    assert {i[0] for i in items} == {d.id} and {i[2] for i in items} == {d.agent}
    log = make_log()
    events = log.append_many(items)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5] and log.verify().ok
    by_step = {e.step: e.data for e in log.trace(d.id)}
    assert by_step["received"]["case"]["payload"] == {"invoice": "ex:I1"}
    assert by_step["received"]["rule_revision"] == d.rule_revision
    assert by_step["facts"]["provenance"] and by_step["facts"]["facts"] == d.facts(rs)
    assert by_step["matched"]["rules_deciding"] == ["ap.approve.small"]
    assert by_step["verified"]["proposals"][0]["action"] == "approve_invoice"
    assert by_step["decided"] == {**by_step["decided"], "outcome": "execute", "source": "rule",
                                  "rule": "ap.approve.small", "ruleset": d.ruleset}
    assert who_decided(log.trace(d.id)) == {"by": "rule", "name": "ap.approve.small", "outcome": "execute",
                                            "reason": "rule", "ruleset": d.ruleset, "review_id": None}
    assert set(by_step) <= set(STEPS)


def test_an_escalation_then_a_review_reads_as_one_trace(mini_engine, make_log, sql_url):
    d = mini_engine.decide(case("I2"), review=False)
    assert d.outcome == "escalate"
    log = make_log()
    log.append_many(decision_events(d, mini_engine.ws.rulesets[d.ruleset]))

    @dataclasses.dataclass
    class Item:  # the fields of engine.govern.review.ReviewItem that a review event reads
        id: str = "R-1"
        decision_id: str = d.id
        status: str = "rejected"
        reviewer: str = "bob"
        note: str = "the PO does not cover it"
        approved: None = None
        approved_hash: None = None
        reason: str = d.reason

    log.append_many([review_event(Item())])
    trace = log.trace(d.id)
    assert [e.step for e in trace][-2:] == ["decided", "reviewed"]
    assert trace[-1].agent == "bob" and trace[-1].data["verdict"] == "rejected"
    app = typer.Typer()
    app.add_typer(audit_app, name="audit")
    r = CliRunner().invoke(app, ["audit", "show", d.id, "--url", sql_url])
    assert r.exit_code == 0, r.output
    assert "escalate" in r.stdout and "rejected by bob: the PO does not cover it" in r.stdout


def test_a_chain_run_is_recorded_and_shown(make_log, sql_url):
    import enum

    class Outcome(str, enum.Enum):
        failed_compensated = "failed_compensated"

    @dataclasses.dataclass
    class StepResult:  # the fields of engine.act.execute.StepResult
        index: int
        action: str
        key: str
        status: str | None
        result: object = None
        error_code: str | None = None
        error_message: str | None = None
        compensation: str | None = None

    @dataclasses.dataclass
    class ChainResult:  # the fields of engine.act.execute.ChainResult that the event reads
        decision_id: str = "D-1"
        chain_id: str = "C-1"
        outcome: Outcome = Outcome.failed_compensated
        steps: list = dataclasses.field(default_factory=lambda: [
            StepResult(0, "approve_invoice", "k" * 64, "done", {"rows": 1}, compensation="done"),
            StepResult(1, "release_payment", "j" * 64, "failed", None, "connector_permanent", "account closed")])
        error_code: str | None = "connector_permanent"
        error_message: str | None = "account closed"

    item = execution_event(ChainResult(), "ap-assistant")
    assert item[:3] == ("D-1", "executed", "ap-assistant")
    assert item[3]["outcome"] == "failed_compensated" and item[3]["steps"][1]["status"] == "failed"
    log = make_log()
    log.append_many([item])
    app = typer.Typer()
    app.add_typer(audit_app, name="audit")
    r = CliRunner().invoke(app, ["audit", "show", "D-1", "--url", sql_url])
    assert r.exit_code == 0, r.output
    assert "chain C-1: failed_compensated (connector_permanent: account closed)" in r.stdout
    assert 'approve_invoice → done (key kkkkkkkkkkkkkkkk) result {"rows": 1} compensation done' in r.stdout
    assert "release_payment → failed (key jjjjjjjjjjjjjjjj) error connector_permanent: account closed" in r.stdout


def test_the_engines_event_bodies_are_json_native_as_encoded():
    """`canonical.encoded` keeps the engine's own bodies as they are, without parsing the text back:
    that is only sound if every body is JSON-native — what its canonical text parses back to. Held
    here on every step of the demo's decisions (rules: execute, deny, escalate, no action) and of
    an LLM decision, with and without escalation."""
    import json

    from engine.canonical import canonical_json
    from engine.demo import sample_cases
    from engine.llm.clients import ScriptedModel
    from engine.workspace import load_workspace
    from tests.brightwater import ROOT, answer, discount_case, engine

    ws = load_workspace(ROOT)
    e = engine(ScriptedModel([answer(confidence=0.95), answer(confidence=0.2)]), ws=ws)
    try:
        decisions = [e.decide(c, llm=False) for c in sample_cases(ws, 120)]
        decisions += [e.decide(discount_case("bwd:SO-3002", 7)), e.decide(discount_case("bwd:SO-3002", 7))]
        assert {d.outcome for d in decisions} >= {"execute", "escalate", "deny"}
        assert {d.source for d in decisions} >= {"rule", "llm"}
        for d in decisions:
            for _id, step, _agent, body in decision_events(d, e.ws.rulesets[d.ruleset], checked=True):
                assert json.loads(body.text) == body.data and canonical_json(body.data) == body.text, step
                assert type(json.loads(body.text)) is dict
                _walk_native(body.data, step)
    finally:
        e.close()


def _walk_native(value, where):
    """Only dict (text keys), list, text, numbers, booleans, None — no tuple, set or object. (A text
    subclass such as an IRI or an enum member encodes as its text and compares equal to it.)"""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            assert type(k) is str, (where, k)
            _walk_native(v, f"{where}.{k}")
    elif t is list:
        for i, v in enumerate(value):
            _walk_native(v, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (str, int, float)), (where, t)
