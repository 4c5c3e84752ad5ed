"""Events → correlation → emitted case → decision → audit trail, on the Brightwater workspace
(rules/accounts_payable/vendor_watch.yaml), from the facade and from `rulebridge observe`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from engine.cli.main import app
from tests.brightwater import ROOT, engine

EVENTS = ROOT / "examples" / "events" / "vendor_watch.jsonl"


def events() -> list[dict]:
    return [json.loads(line) for line in EVENTS.read_text().splitlines() if line.strip()]


def test_a_bank_change_then_an_invoice_is_decided_and_audited_with_its_cause():
    e = engine()
    first, second, late = events()
    assert e.observe(first) == []
    [d] = e.observe(second)
    assert late["at"] > "2026-10-19T09:00:00Z"  # more than 7 days after the change
    assert e.observe(late) == []
    assert (d.case.type, d.outcome.value, d.deciding) == ("fraud.suspicious_invoice", "escalate",
                                                          ["ap.fraud.bank_change_review"])
    assert d.review_id is not None
    assert d.case.payload["bank_changed_by"] == "vendor-portal"
    trail = list(e.audit.trace(d.id))
    received = next(ev for ev in trail if ev.step == "received")
    observed = received.data["observed"]
    assert observed["correlation"] == "ap.watch.bank_change_then_invoice"
    assert [x["id"] for x in observed["events"]] == ["bank-1", "in-1"]
    assert [ev.step for ev in trail][-1] == "decided"
    assert e.audit.verify().ok


def test_cli_observe_prints_the_decisions_and_refuses_bad_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("RULEBRIDGE_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    runner = CliRunner()
    r = runner.invoke(app, ["observe", str(EVENTS), "-w", str(ROOT), "-f", "json"])
    assert r.exit_code == 0, r.output
    [line] = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert line["line"] == 2 and line["observed"]["correlation"] == "ap.watch.bank_change_then_invoice"
    assert line["decision"]["outcome"] == "escalate"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(EVENTS.read_text() + "not json\n"
                   + '{"type": "vendor.renamed", "at": "2026-11-01T00:00:00Z", "payload": {}}\n'
                   + '{"type": "invoice.submitted", "at": "2026-10-01T00:00:00Z", "payload": '
                     '{"invoice": "bwd:INV-10001", "vendor": "bwd:V-1001", "amount": 1}}\n')
    r = runner.invoke(app, ["observe", str(bad), "-w", str(ROOT)])
    assert r.exit_code == 2
    assert "3 events observed, 1 cases emitted and decided, 3 lines refused" in r.stdout
    for code, line in (("event_invalid", 4), ("event_type_unknown", 5), ("event_out_of_order", 6)):
        assert f"bad.jsonl:{line}:" in r.output and f"error[{code}]" in r.output
