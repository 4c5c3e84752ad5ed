"""Identities: keys issued, rotated and revoked (`engine/govern/identity.py`), and their use by
the facade — agents deciding cases, reviewers settling escalations — and the `agents` CLI."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from engine.errors import AuthError, CaseError
from engine.govern.identity import IdentityStore
from tests.brightwater import discount_case, engine

# -- the store, on SQLite and PostgreSQL --------------------------------------------------------


def test_a_key_proves_its_identity_and_only_its_hash_is_stored(sql_url):
    store = IdentityStore(sql_url)
    issued = store.issue("ap-assistant")
    assert issued.token.startswith(f"rbk_{issued.record.key_id}_")
    assert store.authenticate(issued.token) == "ap-assistant"
    assert store.authenticate(issued.token, "agent") == "ap-assistant"
    secret = issued.token.split("_", 2)[2]
    from sqlalchemy import text

    with store.db.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM identity_keys"))]
    assert rows and not any(secret in cell for row in rows for cell in row)


@pytest.mark.parametrize("token, code", [
    ("", "auth_key_malformed"),
    ("not-a-key", "auth_key_malformed"),
    ("rbk_000000000000_" + "A" * 43, "auth_key_unknown"),
])
def test_malformed_and_unknown_keys_are_refused(sql_url, token, code):
    store = IdentityStore(sql_url)
    store.issue("ap-assistant")
    with pytest.raises(AuthError) as info:
        store.authenticate(token)
    assert info.value.code == code


def test_a_right_key_id_with_a_wrong_secret_is_unknown(sql_url):
    store = IdentityStore(sql_url)
    token = store.issue("ap-assistant").token
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthError) as info:
        store.authenticate(forged)
    assert info.value.code == "auth_key_unknown"


def test_rotation_revokes_every_older_key_at_once(sql_url):
    store = IdentityStore(sql_url)
    old = [store.issue("ap-assistant").token for _ in range(2)]
    new, revoked = store.rotate("ap-assistant")
    assert revoked == 2
    assert store.authenticate(new.token) == "ap-assistant"
    for token in old:
        with pytest.raises(AuthError) as info:
            store.authenticate(token)
        assert info.value.code == "auth_key_revoked"


def test_revoking_an_identity_refuses_it_until_reinstated(sql_url):
    store = IdentityStore(sql_url)
    token = store.issue("ap-assistant").token
    assert store.revoke("ap-assistant", "leaked in a build log") == 1
    with pytest.raises(AuthError) as info:
        store.check_not_revoked("ap-assistant")
    assert info.value.code == "auth_identity_revoked" and "leaked" in str(info.value)
    with pytest.raises(AuthError) as info:
        store.authenticate(token)
    assert info.value.code == "auth_key_revoked"
    fresh = store.issue("ap-assistant")  # `agents add` reinstates with a new key
    assert store.authenticate(fresh.token) == "ap-assistant"


def test_a_reviewer_key_is_not_an_agent_key(sql_url):
    store = IdentityStore(sql_url)
    token = store.issue("controller", "reviewer").token
    with pytest.raises(AuthError) as info:
        store.authenticate(token, "agent")
    assert info.value.code == "auth_wrong_kind"


def test_a_revocation_by_another_process_is_seen_within_the_refresh(tmp_path):
    url = f"sqlite:///{tmp_path}/state.db"
    mine, theirs = IdentityStore(url, refresh=0), IdentityStore(url)
    token = theirs.issue("ap-assistant").token
    assert mine.authenticate(token) == "ap-assistant"
    theirs.revoke("ap-assistant", "rotated out")
    with pytest.raises(AuthError) as info:
        mine.authenticate(token)
    assert info.value.code == "auth_key_revoked"


# -- agents deciding cases ------------------------------------------------------------------------

def _engine(tmp_path, **kw):
    return engine(None, state=tmp_path / "state.db", **kw)


def test_a_key_names_the_agent_and_the_case_may_only_repeat_it(tmp_path):
    e = _engine(tmp_path)
    token = e.identities.issue("sales-assistant").token
    d = e.decide(discount_case(agent=None), key=token, llm=False)
    assert d.agent == "sales-assistant"
    with pytest.raises(AuthError) as info:
        e.decide(discount_case(agent="ops-console"), key=token, llm=False)
    assert info.value.code == "auth_identity_mismatch"


def test_an_out_of_scope_agent_is_refused_even_with_a_valid_key(tmp_path):
    e = _engine(tmp_path)
    token = e.identities.issue("ap-assistant").token
    with pytest.raises(AuthError) as info:
        e.decide(discount_case(agent=None), key=token, llm=False)
    assert info.value.code == "agent_not_permitted"


def test_a_revoked_agent_is_refused_even_when_only_named(tmp_path):
    e = _engine(tmp_path)
    e.identities.revoke("sales-assistant", "decommissioned")
    with pytest.raises(AuthError) as info:
        e.decide(discount_case(), llm=False)
    assert info.value.code == "auth_identity_revoked"
    assert e.decide(discount_case(agent="ops-console"), llm=False).agent == "ops-console"


def test_an_unknown_agent_is_refused(tmp_path):
    with pytest.raises(AuthError) as info:
        _engine(tmp_path).decide(discount_case(agent="sales-assistent"), llm=False)
    assert info.value.code == "agent_unknown" and "sales-assistant" in info.value.diagnostics[0].help


def test_required_keys_refuse_a_case_without_one(tmp_path):
    e = _engine(tmp_path)
    e.require_keys = True
    with pytest.raises(AuthError) as info:
        e.decide(discount_case(), llm=False)
    assert info.value.code == "auth_required"
    token = e.identities.issue("sales-assistant").token
    assert e.decide(discount_case(agent=None), key=token, llm=False).agent == "sales-assistant"



# Names no identity may have: longer than 128 characters, or with a control or format character
# (C0, C1, bidi controls that reorder what a person reads, line separators).
BAD_NAMES = {"129-chars": "a" * 129, "200-kB": "x" * 200_000, "c0": "sales\x01assistant",
             "newline": "ops-console\nsales-assistant", "c1": "sales\x85assistant",
             "bidi-override": "sales-assistant\u202e", "bidi-isolate": "\u2066ops-console",
             "zero-width": "sales\u200bassistant", "line-separator": "ops\u2028console"}


def _refusals(e, code: str) -> list:
    return [ev for ev in e.audit.events() if ev.step == "refused" and ev.data["code"] == code]


def _mini(tmp_path):
    """The mini workspace declares no agents: any well-formed name is an implicit identity."""
    from engine import Engine
    from tests.conftest import MINI

    return Engine.open(MINI, state=f"sqlite:///{tmp_path}/state.db")


MINI_CASE = {"type": "invoice.received", "payload": {"invoice": "ex:I1"}, "as_of": "2026-11-01"}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES)
def test_a_malformed_agent_name_is_refused_and_the_refusal_audited(tmp_path, name):
    # Regression: a long name or one with control characters reached the audit log, which refused
    # the `refused` event itself (`audit_invalid`, nothing written); a bidi override passed.
    e = _engine(tmp_path)
    with pytest.raises(AuthError) as info:
        e.decide(discount_case(agent=name), llm=False)
    assert info.value.code == "agent_name_invalid"
    assert len(str(info.value)) < 300 and name not in str(info.value)  # shown escaped, cut short
    [ev] = _refusals(e, "agent_name_invalid")
    assert ev.agent == ev.data["case"]["agent"] and len(ev.agent) <= 81
    assert ev.data["claimed"]["length"] == len(name)
    assert e.audit.verify().ok


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES)
def test_a_malformed_name_is_no_implicit_identity(tmp_path, name):
    # Regression: without an agents file every named agent was taken at its word — a bidi
    # override or a C1 control included — and decided as that identity.
    e = _mini(tmp_path)
    with pytest.raises(AuthError) as info:
        e.decide({**MINI_CASE, "agent": name})
    assert info.value.code == "agent_name_invalid"
    assert len(_refusals(e, "agent_name_invalid")) == 1


def test_a_name_of_128_characters_is_an_identity(tmp_path):
    name = "a" * 128
    assert _mini(tmp_path).decide({**MINI_CASE, "agent": name}).agent == name


def test_the_refusal_of_a_case_too_large_for_one_event_is_still_audited(tmp_path):
    # A refused case larger than an audit event can hold is recorded by its hash and size.
    e = _engine(tmp_path)
    case = discount_case(agent="nobody")
    case["payload"]["filler"] = "x" * 5_000_000
    with pytest.raises(CaseError) as info:
        e.decide(case, llm=False)
    assert info.value.code == "case_too_large"  # refused before anything else, and audited
    [ev] = _refusals(e, "case_too_large")
    assert ev.data["case"]["bytes"] > 5_000_000 and len(ev.data["case"]["sha256"]) == 64
    # a case within the size limit, from an unknown agent, is refused as such (and audited)
    case["payload"]["filler"] = "x" * 1000
    with pytest.raises(AuthError) as info:
        e.decide(case, llm=False)
    assert info.value.code == "agent_unknown"
    [ev] = _refusals(e, "agent_unknown")
    assert ev.data["case"]["payload"]["filler"] == "x" * 1000

# -- reviewers -----------------------------------------------------------------------------------

def _escalated(e):
    d = e.decide(discount_case(), llm=False)
    assert d.outcome == "escalate" and d.review_id
    return d


def test_only_a_declared_reviewer_of_the_ruleset_may_settle(tmp_path):
    e = _engine(tmp_path)
    d = _escalated(e)
    for who, code in (("dana", "reviewer_unknown"), ("ap-lead", "reviewer_not_permitted")):
        with pytest.raises(AuthError) as info:
            e.review_reject(d.review_id, reviewer=who, reason="no")
        assert info.value.code == code
    assert e.review_show(d.review_id).status == "pending"
    assert e.review_reject(d.review_id, reviewer="sales-ops-lead", reason="no").reviewer == "sales-ops-lead"


def test_a_reviewer_key_proves_the_reviewer(tmp_path):
    e = _engine(tmp_path)
    d = _escalated(e)
    token = e.identities.issue("controller", "reviewer").token
    with pytest.raises(AuthError) as info:
        e.review_reject(d.review_id, reviewer="sales-ops-lead", reason="no", key=token)
    assert info.value.code == "auth_identity_mismatch"
    agent_token = e.identities.issue("sales-assistant").token
    with pytest.raises(AuthError) as info:
        e.review_reject(d.review_id, reviewer=None, reason="no", key=agent_token)
    assert info.value.code == "auth_wrong_kind"
    assert e.review_reject(d.review_id, reviewer=None, reason="no", key=token).reviewer == "controller"


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES)
def test_a_malformed_reviewer_name_is_refused_and_the_refusal_audited(tmp_path, name):
    e = _engine(tmp_path)
    d = _escalated(e)
    with pytest.raises(AuthError) as info:
        e.review_reject(d.review_id, reviewer=name, reason="no")
    assert info.value.code == "reviewer_name_invalid"
    assert len(str(info.value)) < 300
    [ev] = _refusals(e, "reviewer_name_invalid")
    assert ev.decision_id == d.id and ev.data["review"] == d.review_id
    assert e.review_show(d.review_id).status == "pending" and e.audit.verify().ok


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES)
def test_a_malformed_name_is_no_implicit_reviewer(tmp_path, name):
    # Regression: without declared reviewers anyone named settled an escalation — with a bidi
    # override in their name, or one the audit log then refused after the item had changed.
    e = _mini(tmp_path)
    d = e.decide({**MINI_CASE, "payload": {"invoice": "ex:I2"}})  # billed 10, received 4
    assert d.outcome == "escalate" and d.review_id, d.outcome
    with pytest.raises(AuthError) as info:
        e.review_reject(d.review_id, reviewer=name, reason="no")
    assert info.value.code == "reviewer_name_invalid"
    assert e.review_show(d.review_id).status == "pending"


def test_concurrent_rotations_leave_exactly_one_active_key(sql_url):
    url = sql_url
    store = IdentityStore(url)
    store.issue("ap-assistant")
    barrier = threading.Barrier(4)

    def rotate():
        barrier.wait()
        IdentityStore(url).rotate("ap-assistant")

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([k for k in store.keys("ap-assistant") if k.active]) == 1


# -- the CLI -------------------------------------------------------------------------------------

def test_agents_cli_add_list_rotate_revoke(tmp_path, monkeypatch):
    from engine.cli.main import app
    from tests.brightwater import ROOT

    monkeypatch.setenv("RULEBRIDGE_STATE_URL", f"sqlite:///{tmp_path}/state.db")
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [*args, "-w", str(ROOT)])

    added = run("agents", "add", "ap-assistant", "-f", "json")
    assert added.exit_code == 0, added.output
    token = json.loads(added.output)["key"]
    again = run("agents", "add", "ap-assistant")
    assert again.exit_code == 1 and "identity_has_key" in again.output
    unknown = run("agents", "add", "ap-assistent")
    assert unknown.exit_code == 2 and "did you mean `ap-assistant`" in unknown.output
    listed = {r["id"]: r for r in json.loads(run("agents", "list", "-f", "json").output)}
    assert listed["ap-assistant"]["active_keys"] == [token.split("_")[1]]
    assert listed["controller"]["kind"] == "reviewer"
    rotated = json.loads(run("agents", "rotate", "ap-assistant", "-f", "json").output)
    assert rotated["revoked_keys"] == 1 and rotated["key"] != token
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"type": "invoice.received", "payload": {"invoice": "bwd:INV-10004"}}))
    old = runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "--key", token])
    assert old.exit_code == 2 and "auth_key_revoked" in old.output
    ok = runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "--key", rotated["key"], "-f", "json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["agent"] == "ap-assistant"
    revoked = run("agents", "revoke", "ap-assistant", "--reason", "leaked")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    refused = runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "--key", rotated["key"]])
    assert refused.exit_code == 2 and "auth_key_revoked" in refused.output
    listed = {r["id"]: r for r in json.loads(run("agents", "list", "-f", "json").output)}
    assert listed["ap-assistant"]["revoked"] == "leaked" and listed["ap-assistant"]["active_keys"] == []
