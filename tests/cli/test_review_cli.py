"""The LLM and review commands as a user meets them: typer's runner on the Brightwater workspace."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from tests.conftest import ROOT

runner = CliRunner()
# A discount no rule decides: bronze tier (limit 5%), 7% asked, order under the volume threshold.
CASE = {"type": "discount.requested", "id": "cli-review-1", "as_of": "2026-11-01", "agent": "sales-assistant",
        "payload": {"order": "bwd:SO-3002", "percent": 7, "requested_by": "bwd:EMP-037"}}


@pytest.fixture
def state(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("RULEBRIDGE_STATE_URL", url)
    return url


def _json(r):
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_escalation_is_queued_then_approved_once(tmp_path, state):
    case = tmp_path / "case.json"
    case.write_text(json.dumps(CASE))
    d = _json(runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "-f", "json"]))
    assert (d["outcome"], d["reason"]) == ("escalate", "no_rule_matched")
    assert d["review_id"]
    items = _json(runner.invoke(app, ["review", "list", "-w", str(ROOT), "-f", "json"]))
    assert [i["id"] for i in items] == [d["review_id"]]
    assert items[0]["context"]["facts"]["case.order.customer.tier"] == "bronze"
    # deciding the same case again does not queue it twice
    again = _json(runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "-f", "json"]))
    assert again["review_id"] == d["review_id"]
    rid = d["review_id"]
    # no proposal waits in it: the reviewer must say what to approve
    r = runner.invoke(app, ["review", "approve", rid, "--reviewer", "controller", "-w", str(ROOT)])
    assert r.exit_code == 2 and "review_needs_action" in r.output
    # a discount the margin guard forbids is refused, and the item stays pending
    r = runner.invoke(app, ["review", "approve", rid, "--reviewer", "controller", "-w", str(ROOT), "--action",
                            "approve_discount", "--params", '{"order": "bwd:SO-3002", "percent": 60}'])
    assert r.exit_code == 1 and "crm.guard.margin_floor" in r.output
    ok = _json(runner.invoke(app, ["review", "approve", rid, "--reviewer", "controller", "-w", str(ROOT), "-f", "json",
                                   "--action", "approve_discount", "--params",
                                   '{"order": "bwd:SO-3002", "percent": 7}']))
    assert ok["status"] == "approved" and ok["reviewer"] == "controller"
    assert ok["approved"]["params"]["order"] == "https://brightwater.example/id/SO-3002"
    assert len(ok["approved_hash"]) == 64
    r = runner.invoke(app, ["review", "reject", rid, "--reviewer", "sales-ops-lead", "--reason", "late",
                            "-w", str(ROOT)])
    assert r.exit_code == 1 and "review_not_pending" in r.output


@pytest.mark.parametrize("given", ["", "3fa9c0"])
def test_approve_with_an_empty_or_short_hash_is_bad_input(tmp_path, state, given):
    """Regression: `--hash ""` skipped the hash check silently."""
    case = tmp_path / "case.json"
    case.write_text(json.dumps(CASE))
    rid = _json(runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "-f", "json"]))["review_id"]
    r = runner.invoke(app, ["review", "approve", rid, "--reviewer", "controller", "-w", str(ROOT), "--hash", given,
                            "--action", "approve_discount", "--params", '{"order": "bwd:SO-3002", "percent": 7}'])
    assert r.exit_code == 2, r.output
    assert "review_hash_too_short" in r.output and "at least 12 hex characters" in r.output
    items = _json(runner.invoke(app, ["review", "list", "-w", str(ROOT), "-f", "json"]))
    assert [i["id"] for i in items] == [rid]  # still pending


def test_unknown_review_item_is_bad_input(state):
    r = runner.invoke(app, ["review", "show", "R-nope", "-w", str(ROOT)])
    assert r.exit_code == 2 and "review_not_found" in r.output


def test_demo_replays_recorded_answers_and_shows_every_outcome(state):
    s = _json(runner.invoke(app, ["demo", "-w", str(ROOT), "-f", "json"]))
    t = s["total"]
    assert t["cases"] == 240 and t["invalid"] == 0
    assert min(t["rule"], t["llm"], t["review"], t["deny"]) > 0, t
    assert "replayed" in s["llm"] and "not a live model" in s["llm"]
    # every LLM call of the stream was answered from the file: no replay misses
    assert s["llm_calls"] >= t["reached_llm"] > 0
    assert s["schema_repairs"] >= 1 and s["guard_repairs"] >= 1
    # only cases no rule decided reached the model
    assert t["reached_llm"] <= t["cases"] - t["rule"]
