"""The trace for people (`engine/audit/lines.py`): every step a governed decision records has
lines of its own — none falls back to raw JSON — and they carry the step's key data."""

from __future__ import annotations

from engine.audit.lines import LINES, event_lines, short_json, who_text
from engine.audit.trail import STEPS, who_decided
from engine.workspace import load_workspace
from tests.brightwater import ROOT, discount_case, engine


def test_every_decision_step_has_lines():
    assert set(STEPS) <= set(LINES)


def test_an_executed_and_a_reviewed_decision_read_without_raw_json(tmp_path):
    e = engine(None, ws=load_workspace(ROOT), state=f"sqlite:///{tmp_path}/state.db")
    try:
        done = next(d for n in range(10001, 10100)
                    if (d := e.decide({"type": "invoice.received", "payload": {"invoice": f"bwd:INV-{n}"},
                                       "as_of": "2026-11-01"}, llm=False, execute=True)).outcome == "execute")
        waiting = e.decide(discount_case("bwd:SO-3005", 25), llm=False, review=True)
        assert waiting.outcome == "escalate"
        for d in (done, waiting):
            for ev in e.audit.trace(d.id):
                lines = event_lines(ev.step, ev.data)
                assert lines and lines != [short_json(ev.data)], (ev.step, ev.data)
        trace = e.audit.trace(done.id)
        text = "\n".join(line for ev in trace for line in event_lines(ev.step, ev.data))
        assert "approve_invoice" in text and "done" in text
        assert who_text(who_decided(trace)).startswith("rule `")
        assert who_text(who_decided(e.audit.trace(waiting.id))).startswith("no one yet: waiting for a person")
    finally:
        e.close()


def test_an_unknown_step_shows_its_json():
    assert event_lines("something_new", {"b": 1, "a": "x"}) == ['{"a": "x", "b": 1}']
