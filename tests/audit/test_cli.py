"""`rulebridge audit` as a user meets it: typer's runner, on logs in SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import typer
from sqlalchemy import update
from typer.testing import CliRunner

from engine.audit.chain import hash_of
from engine.audit.log import audit_events
from engine.audit.report import read_events
from engine.audit.settings import default_audit_url
from engine.cli.audit_cmd import audit_app
from tests.audit.helpers import KEY, clock, decision, ids

runner = CliRunner()
app = typer.Typer()
app.add_typer(audit_app, name="audit")  # as engine/cli/main.py registers it


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["audit", *args], env=env)


def llm_decision(log) -> None:
    """A decision no rule decided: the LLM proposed, the guards sent it to a person, who approved."""
    did = "D-LLM"
    log.append_many([
        (did, "received", "sales-assistant", {"case": {"type": "discount.requested", "payload": {"order": "SO-1"}},
                                              "ruleset": "crm.discount_approval", "rule_revision": "r1",
                                              "graph_revision": "g1", "as_of": "2026-11-01"}),
        (did, "matched", "sales-assistant", {"rules_matched": [], "rules_deciding": [], "hit_policy": "priority"}),
        (did, "llm", "sales-assistant", {"model": "openai/gpt-4o-mini", "replayed": True, "calls": 2,
                                         "schema_repairs": 1, "guard_repairs": 0, "attempts": [
                                             {"kind": "initial", "prompt_hash": "ab" * 32, "raw": "{}",
                                              "errors": ["params.percent: field required"]},
                                             {"kind": "schema_repair", "prompt_hash": "cd" * 32, "raw": "{..}",
                                              "errors": []}]}),
        (did, "verified", "sales-assistant", {"proposals": [{"action": "approve_discount", "params": {"percent": 7},
                                                             "source": "llm", "rule": None}],
                                              "checks": [{"code": "guard_review", "id": "crm.guard.big",
                                                          "message": "large discounts need a person"}],
                                              "guards": []}),
        (did, "decided", "sales-assistant", {"outcome": "escalate", "source": "llm", "reason": "guard_review",
                                             "rule": None, "ruleset": "crm.discount_approval", "review_id": "R-1"}),
    ])
    log.append_many([
        (did, "reviewed", "alice", {"review_id": "R-1", "verdict": "approved", "reviewer": "alice", "note": "ok",
                                    "proposal": {"action": "approve_discount"}, "proposal_hash": "ef" * 32}),
        (did, "decided", "alice", {"outcome": "execute", "source": "human", "reason": "review_approved",
                                   "rule": None, "ruleset": "crm.discount_approval", "reviewer": "alice"}),
        (did, "executed", "alice", {"action": "approve_discount", "status": "done", "connector": "crm-http",
                                    "result": {"discount_id": "DSC-9"}}),
    ])


@pytest.fixture
def log_url(sql_url, make_log):
    log = make_log(now=clock(step_ms=60_000), new_id=ids(), hmac_key=KEY)
    for i in range(3):
        log.append_many(decision(i))
    llm_decision(log)
    return sql_url


ENV = {"RULEBRIDGE_AUDIT_HMAC_KEY": KEY.decode()}


def test_verify_valid_then_broken(log_url, make_log):
    r = run("verify", "--url", log_url, env=ENV)
    assert r.exit_code == 0, r.output
    assert "chain valid: 20 events" in r.stdout and "signatures: checked" in r.stdout
    head = make_log().head()
    assert f"--anchor {head.seq}:{head.hash}" in r.stdout
    assert run("verify", "--url", log_url, "--anchor", f"{head.seq}:{head.hash}", env=ENV).exit_code == 0
    data = json.loads(run("verify", "--url", log_url, "-f", "json", env=ENV).stdout)
    assert (data["ok"], data["checked"], data["head"]["seq"], data["signatures"]) == (True, 20, 20, "checked")
    with make_log().db.begin() as c:
        c.execute(update(audit_events).where(audit_events.c.seq == 7).values(data='{"outcome":"deny"}'))
    r = run("verify", "--url", log_url, env=ENV)
    assert r.exit_code == 1
    assert "chain broken at event 7 (`E-00000007`): hash_mismatch" in r.stdout
    assert "6 events before it are valid" in r.stdout
    data = json.loads(run("verify", "--url", log_url, "--format", "json").stdout)
    assert (data["ok"], data["first_broken_seq"], data["first_broken_id"], data["reason"]) == (
        False, 7, "E-00000007", "hash_mismatch")


def test_verify_reports_a_truncated_tail(log_url, make_log):
    from sqlalchemy import delete

    with make_log().db.begin() as c:
        c.execute(delete(audit_events).where(audit_events.c.seq > 17))
    r = run("verify", "--url", log_url, env=ENV)
    assert r.exit_code == 1
    assert "chain broken at event 18: head_mismatch" in r.stdout
    assert "the head says the last event is 20 but the log ends at 17: events were removed from the end" in r.stdout
    assert "the 17 stored events form a valid chain" in r.stdout


def test_verify_catches_a_cut_tail_with_a_rewritten_head_when_signed(log_url, make_log):
    """Regression: events cut from the end and the head rewritten to match passed `audit verify`
    with RULEBRIDGE_AUDIT_HMAC_KEY set; the head row is signed now."""
    from sqlalchemy import delete, select

    from engine.audit.log import audit_head

    with make_log().db.begin() as c:
        last = c.execute(select(audit_events.c.hash).where(audit_events.c.seq == 17)).scalar()
        c.execute(delete(audit_events).where(audit_events.c.seq > 17))
        c.execute(update(audit_head).values(seq=17, hash=last, count=17))
    r = run("verify", "--url", log_url, env=ENV)
    assert r.exit_code == 1, r.output
    assert "chain broken at event 18: head_bad_signature" in r.stdout
    assert "the 17 stored events form a valid chain" in r.stdout
    data = json.loads(run("verify", "--url", log_url, "-f", "json", env=ENV).stdout)
    assert (data["ok"], data["reason"], data["first_broken_seq"]) == (False, "head_bad_signature", 18)
    assert run("verify", "--url", log_url).exit_code == 0  # without the key: only an anchor catches it


@pytest.mark.parametrize("where", ["middle", "index", "header"])
def test_verify_reports_a_corrupt_database_file(tmp_path, where):
    """Regression: `audit verify` said "valid" on a SQLite file that `decide` reports as malformed
    (a broken index page: the chain walk never reads it), and a traceback on other broken pages.
    It runs the database's integrity check first and reports `db_corrupt`."""
    import random
    import shutil
    import sqlite3

    from engine.audit import AuditLog

    with AuditLog(f"sqlite:///{tmp_path}/state.db", now=clock(), new_id=ids()) as log:
        for i in range(150):
            log.append_many(decision(i))
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "state.db", copy)
    page, pages = 4096, 3
    if where == "index":  # the last page of the `ts` index
        with sqlite3.connect(copy) as c:
            try:
                last = c.execute("SELECT max(pageno) FROM dbstat WHERE name = 'ix_audit_events_ts'").fetchone()[0]
            except sqlite3.OperationalError:
                pytest.skip("this SQLite has no dbstat table")
        start, pages = (last - 1) * page, 1
    data = bytearray(copy.read_bytes())
    if where == "middle":
        start = (len(data) // page // 2) * page
    elif where == "header":
        start = 0
    data[start:start + pages * page] = random.Random(7).randbytes(pages * page)  # pages of garbage
    copy.write_bytes(data)
    url = f"sqlite:///{copy}"
    r = run("verify", "--url", url)
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # a clean exit, not a traceback
    assert "db_corrupt" in r.output and "Traceback" not in r.output
    out = json.loads(run("verify", "--url", url, "-f", "json").stdout)
    assert (out["ok"], out["reason"]) == (False, "db_corrupt")
    assert run("verify", "--url", f"sqlite:///{tmp_path}/state.db").exit_code == 0  # the original is fine


def test_verify_with_the_wrong_key_fails(log_url):
    r = run("verify", "--url", log_url, env={"RULEBRIDGE_AUDIT_HMAC_KEY": "not-the-key-0123456789"})
    assert r.exit_code == 1 and "bad_signature" in r.stdout and "event 1 " in r.stdout


def test_show_names_who_decided_and_every_step(log_url):
    r = run("show", "D-00001", "--url", log_url)
    assert r.exit_code == 0, r.output
    assert ("decision D-00001: execute, decided by rule `ap.approve.small` (ruleset "
            "accounts_payable.invoice_approval)") in r.stdout
    for text in ("received", "case invoice.received", "rules matched: ap.approve.small", "deciding: ap.approve.small",
                 "case.invoice.amount = 101", "execute (source rule"):
        assert text in r.stdout, text
    r = run("show", "D-LLM", "--url", log_url)
    assert r.exit_code == 0, r.output
    assert "decided by reviewer `alice`" in r.stdout
    for text in ("model openai/gpt-4o-mini (replayed) · 2 calls, 1 schema repairs",
                 "attempt initial: prompt abababababababab · invalid: params.percent: field required",
                 "check guard_review crm.guard.big: large discounts need a person", "approved by alice: ok",
                 "approve_discount → done via crm-http", 'result {"discount_id": "DSC-9"}', "review item R-1"):
        assert text in r.stdout, text
    events = json.loads(run("show", "D-LLM", "--url", log_url, "-f", "json").stdout)
    assert [e["step"] for e in events] == ["received", "matched", "llm", "verified", "decided", "reviewed",
                                           "decided", "executed"]
    assert all(e["hash"] == hash_of(read_events([json.dumps(e)], "jsonl")[0]) for e in events)


def test_show_an_unknown_decision_is_bad_input(log_url):
    r = run("show", "D-NOPE", "--url", log_url)
    assert r.exit_code == 2 and "audit_unknown_decision" in r.output and "D-NOPE" in r.output


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_round_trips(log_url, make_log, tmp_path, fmt):
    out = tmp_path / "sub" / f"audit.{fmt}"
    r = run("export", "--url", log_url, "--format", fmt, "--output", str(out))
    assert r.exit_code == 0, r.output
    assert "20 events written" in r.output
    back = read_events(out.read_text(encoding="utf-8").splitlines(keepends=True), fmt)
    assert back == list(make_log().events())
    assert all(hash_of(e) == e.hash for e in back)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left behind
    # to stdout, and a window
    r = run("export", "--url", log_url, "-f", fmt, "--since", "2026-11-01T09:01:00Z", "--until", "2026-11-01T09:03")
    assert r.exit_code == 0, r.output
    window = read_events(r.stdout.splitlines(keepends=True), fmt)
    assert {e.decision_id for e in window} == {"D-00001", "D-00002"}


def test_export_rejects_bad_dates_without_writing(log_url, tmp_path):
    out = tmp_path / "audit.jsonl"
    r = run("export", "--url", log_url, "--since", "last tuesday", "--output", str(out))
    assert r.exit_code == 2 and "audit_bad_time" in r.output and "last tuesday" in r.output
    assert not out.exists()


def test_stats_text_and_json(log_url):
    data = json.loads(run("stats", "--url", log_url, "--format", "json").stdout)
    assert data["decisions"] == 4 and data["events"] == 20
    assert data["by_source"] == {"human": {"execute": 1}, "rule": {"execute": 3}}
    assert data["by_rule"] == {"ap.approve.small": {"execute": 3}}
    r = run("stats", "--url", log_url)
    assert r.exit_code == 0, r.output
    assert "4 decisions, 20 events" in r.stdout
    for title in ("decisions by source", "decisions by rule", "decisions by ruleset", "decisions by agent",
                  "events by step"):
        assert title in r.stdout, title
    r = run("stats", "--url", log_url, "--until", "2026-13-01")
    assert r.exit_code == 2 and "error[audit_bad_time]: until `2026-13-01` is not an ISO 8601 date" in r.output


def test_bad_input_exit_codes(tmp_path, log_url):
    missing = f"sqlite:///{tmp_path}/none.db"
    r = run("verify", "--url", missing)
    assert r.exit_code == 2 and "audit_not_found" in r.output
    r = run("verify", "--url", log_url, "--anchor", "7:nothex")
    assert r.exit_code == 2 and "audit_bad_anchor" in r.output
    r = run("verify", "--url", log_url, env={"RULEBRIDGE_AUDIT_HMAC_KEY": "short"})
    assert r.exit_code == 2 and "audit_bad_key" in r.output


def test_default_url_comes_from_env_then_config_then_the_state_database(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.delenv("RULEBRIDGE_STATE_URL", raising=False)
    monkeypatch.delenv("RULEBRIDGE_AUDIT_URL", raising=False)
    assert default_audit_url(ws) == f"sqlite:///{ws.resolve()}/.rulebridge/state.db"
    (ws / "rulebridge.toml").write_text('[storage]\nurl = "sqlite:///state-from-config.db"\n')
    assert default_audit_url(ws) == "sqlite:///state-from-config.db"
    monkeypatch.setenv("RULEBRIDGE_STATE_URL", "sqlite:///state-from-env.db")
    assert default_audit_url(ws) == "sqlite:///state-from-env.db"
    (ws / "rulebridge.toml").write_text('[audit]\nurl = "sqlite:///audit-from-config.db"\n')
    assert default_audit_url(ws) == "sqlite:///audit-from-config.db"
    monkeypatch.setenv("RULEBRIDGE_AUDIT_URL", "sqlite:///audit-from-env.db")
    assert default_audit_url(ws) == "sqlite:///audit-from-env.db"


def test_commands_use_the_workspace_default(tmp_path, monkeypatch, log_url):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.delenv("RULEBRIDGE_AUDIT_URL", raising=False)
    (ws / "rulebridge.toml").write_text(f'[audit]\nurl = "{log_url}"\n')
    r = run("verify", "-w", str(ws), env=ENV)
    assert r.exit_code == 0 and "chain valid: 20 events" in r.stdout
    (ws / "rulebridge.toml").write_text("[audit\n")
    r = run("verify", "-w", str(ws))
    assert r.exit_code == 1 and "error[config]" in r.output
