"""The governed path end to end on the Brightwater workspace: decide → verify → execute exactly
once through the graph connector → audit, from the facade and from the CLI.

Every test loads its own workspace: executing actions changes the in-memory graph."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engine.act.execute import Step
from engine.case import IRI
from engine.errors import AuthError
from engine.workspace import load_workspace
from tests.brightwater import BWD, ROOT, discount_case, engine

BW = "https://brightwater.example/ontology#"


def invoice_case(n: int) -> dict:
    return {"type": "invoice.received", "payload": {"invoice": f"bwd:INV-{n}"}, "as_of": "2026-11-01"}


@pytest.fixture
def gov(sql_url):
    """The engine on a state database of its own: SQLite, and PostgreSQL when the test server is there."""
    e = engine(None, ws=load_workspace(ROOT), state=sql_url)
    yield e
    for store in (e._audit, e._executor.ledger if e._executor else None):
        if store is not None:
            store.close()


def first_approved(e) -> tuple[int, object]:
    for n in range(10001, 10100):
        d = e.decide(invoice_case(n), llm=False)
        if d.outcome == "execute" and d.proposals[0].action == "approve_invoice":
            return n, d
    raise AssertionError("no invoice the rules approve")


def status(e, n: int) -> list:
    return e.ws.store.objects(f"{BWD}INV-{n}", BW + "status")


def test_an_approved_invoice_is_executed_once_and_the_next_decision_sees_it(gov):
    n, d = first_approved(gov)
    before = gov.ws.store.revision
    assert status(gov, n) == ["received"]
    res = gov.execute(d.id)
    assert res.outcome == "done" and [s["status"] for s in res.steps] == ["done"]
    assert status(gov, n) == ["approved"] and gov.ws.store.revision != before
    again = gov.execute(d.id)  # nothing runs twice: the recorded outcome
    assert again.outcome == "done" and again.steps[0]["key"] == res.steps[0]["key"]
    assert len(list(gov.executor.ledger.executions(d.id))) == 1
    after = gov.decide(invoice_case(n), llm=False)  # the graph changed: the rules see an approved invoice
    assert after.graph_revision == gov.ws.store.revision
    assert not (after.outcome == "execute" and after.proposals[0].action == "approve_invoice")


def test_the_audit_trail_of_an_executed_decision_is_complete_and_the_chain_valid(gov):
    _, d = first_approved(gov)
    gov.execute(d.id)
    steps = [ev.step for ev in gov.audit.trace(d.id)]
    assert steps[:2] == ["received", "facts"] and "decided" in steps
    assert steps.index("decided") < steps.index("execution_started") < steps.index("execution_done")
    assert steps[-1] == "executed"
    report = gov.audit.verify()
    assert report.ok and report.checked >= len(steps)


def test_decide_with_execute_runs_at_once(gov, tmp_path):
    n, _d = first_approved(gov)
    gov2 = engine(None, ws=load_workspace(ROOT), state=tmp_path / "other.db")
    d2 = gov2.decide(invoice_case(n), llm=False, execute=True)
    assert d2.execution["outcome"] == "done" and d2.to_json()["execution"]["decision_id"] == d2.id
    assert status(gov2, n) == ["approved"]


def test_a_stale_decision_is_re_verified_and_refused(gov):
    n, d1 = first_approved(gov)
    d2 = gov.decide(invoice_case(n), llm=False)  # the same invoice, decided twice before either runs
    assert gov.execute(d1.id).outcome == "done"
    res = gov.execute(d2.id)
    assert res.outcome == "refused" and res.steps == []
    assert any(r["code"] == "precondition" for r in res.refused)
    assert gov.executor.ledger.executions(d2.id) == []
    assert gov.decisions.get(d2.id).status == "refused"
    assert [ev.step for ev in gov.audit.trace(d2.id)][-1] == "executed"
    from engine.cli.main import app

    shown = CliRunner().invoke(app, ["audit", "show", d2.id, "-w", str(ROOT), "--url", gov.state_url])
    assert shown.exit_code == 0, shown.output
    assert "refused" in shown.output and "step 1 approve_invoice: precondition" in shown.output


def test_a_refused_agent_is_audited(gov):
    with pytest.raises(AuthError) as info:
        gov.decide(discount_case(agent="intruder"), llm=False)
    assert info.value.code == "agent_unknown"
    refused = [ev for ev in gov.audit.events() if ev.step == "refused"]
    assert len(refused) == 1 and refused[0].data["code"] == "agent_unknown" and refused[0].agent == "intruder"


def test_an_approved_review_item_executes_once_as_a_human_decision(gov):
    d = gov.decide(discount_case("bwd:SO-3002", 7), llm=False)
    assert d.outcome == "escalate" and d.review_id
    item = gov.review_approve(d.review_id, reviewer="sales-ops-lead", action="approve_discount",
                              params={"order": "bwd:SO-3002", "percent": 7})
    res = gov.execute(item.id)
    assert res.outcome == "done"
    assert gov.ws.store.objects(f"{BWD}SO-3002", BW + "discount_percent") == [7]
    assert gov.review_show(item.id).status == "applied"
    assert gov.execute(item.id).outcome == "done"  # applied once: the ledger returns the record
    assert len(gov.executor.ledger.executions(d.id)) == 1
    steps = [ev.step for ev in gov.audit.trace(d.id)]
    assert "reviewed" in steps and steps[-1] == "executed"


def test_a_reviewers_verdict_is_who_decided_in_the_trail_and_the_stats(gov):
    """Regression: the trail said `decided by no one yet: waiting for a person` for an approved
    and executed item, and `audit stats` counted it as an escalation by no one."""
    from engine.audit.trail import who_decided
    from engine.cli.main import app

    approved = gov.decide(discount_case("bwd:SO-3002", 7), llm=False)
    rejected = gov.decide(discount_case("bwd:SO-3005", 7), llm=False)
    assert approved.review_id and rejected.review_id
    gov.review_approve(approved.review_id, reviewer="sales-ops-lead", action="approve_discount",
                       params={"order": "bwd:SO-3002", "percent": 7})
    gov.review_reject(rejected.review_id, reviewer="sales-ops-lead", reason="customer asked twice")
    w = who_decided(gov.audit.trace(approved.id))
    assert (w["by"], w["name"], w["outcome"], w["reason"]) == ("human", "sales-ops-lead", "execute", "review_approved")
    w = who_decided(gov.audit.trace(rejected.id))
    assert (w["by"], w["name"], w["outcome"], w["reason"]) == ("human", "sales-ops-lead", "deny", "review_rejected")
    stats = gov.audit.stats()
    assert stats["by_source"]["human"] == {"deny": 1, "execute": 1}
    assert "none" not in stats["by_source"]  # both escalations were settled by the person
    shown = CliRunner().invoke(app, ["audit", "show", approved.id, "-w", str(ROOT), "--url", gov.state_url])
    assert shown.exit_code == 0, shown.output
    assert "execute, decided by reviewer `sales-ops-lead`" in shown.output
    gov.execute(approved.review_id)
    shown = CliRunner().invoke(app, ["audit", "show", approved.id, "-w", str(ROOT), "--url", gov.state_url])
    assert "decided by reviewer `sales-ops-lead`; executed: done" in shown.output


def test_a_failing_second_step_compensates_the_first_on_the_real_graph(gov):
    """approve_invoice, then hold_payment on an invoice whose payment is already held: the graph
    connector writes nothing for step 2, and step 1 is undone by its inverse (reopen_invoice)."""
    n, d = first_approved(gov)
    inv = f"{BWD}INV-{n}"
    gov.ws.store.update("INSERT { ?i <" + BW + "payment_hold_reason> \"held by treasury\" } WHERE {}", {"i": IRI(inv)})
    approver = d.proposals[0].params["approver"]
    steps = [Step("approve_invoice", {"invoice": inv, "approver": approver}, "kg",
                  Step("reopen_invoice", {"invoice": inv}, "kg")),
             Step("hold_payment", {"invoice": inv, "reason": "second hold"}, "kg",
                  Step("release_payment_hold", {"invoice": inv}, "kg"))]
    res = gov.executor.run("chain-1", "ops-console", steps)
    assert res.outcome == "failed_compensated"
    assert [s.status for s in res.steps] == ["compensated", "failed"] and res.steps[0].compensation == "done"
    assert status(gov, n) == ["received"]  # restored by the inverse
    assert gov.ws.store.objects(inv, BW + "payment_hold_reason") == ["held by treasury"]
    assert gov.audit.verify().ok


def test_cli_decide_execute_then_audit_show_and_verify(tmp_path, monkeypatch):
    from engine.cli.main import app

    monkeypatch.setenv("RULEBRIDGE_STATE_URL", f"sqlite:///{tmp_path}/state.db")
    runner = CliRunner()
    case = tmp_path / "case.json"
    case.write_text(json.dumps(invoice_case(10004)))
    r = runner.invoke(app, ["decide", str(case), "-w", str(ROOT), "--execute", "-f", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["outcome"] == "execute" and d["execution"]["outcome"] == "done"
    assert "in-memory graph of this command" in r.stderr  # the user is told the change will not last
    again = runner.invoke(app, ["execute", d["id"], "-w", str(ROOT), "-f", "json"])
    # a new process: the in-memory graph was reloaded from the files, the ledger remembers
    assert again.exit_code == 0 and json.loads(again.stdout)["steps"][0]["key"] == d["execution"]["steps"][0]["key"]
    assert "in-memory graph" not in again.stderr  # nothing ran this time, so nothing to forget
    missing = runner.invoke(app, ["execute", "no-such-decision", "-w", str(ROOT)])
    assert missing.exit_code == 2 and "decision_not_found" in missing.output
    shown = runner.invoke(app, ["audit", "show", d["id"], "-w", str(ROOT)])
    assert shown.exit_code == 0 and d["rules_deciding"][0] in shown.output and "execution_done" in shown.output
    verified = runner.invoke(app, ["audit", "verify", "-w", str(ROOT)])
    assert verified.exit_code == 0 and "chain valid" in verified.output


def test_the_demo_executes_and_ends_with_a_verified_chain(tmp_path, monkeypatch):
    from engine.cli.main import app

    monkeypatch.setenv("RULEBRIDGE_STATE_URL", f"sqlite:///{tmp_path}/state.db")
    r = CliRunner().invoke(app, ["demo", "-w", str(ROOT), "-n", "80", "-f", "json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["total"]["llm"] > 0
    accepted = s["total"]["rule"] + s["total"]["llm"]
    assert sum(s["executed"].values()) == accepted and s["executed"].get("done", 0) > 0
    assert sum(s["refused_because"].values()) == s["executed"].get("refused", 0)
    assert not [why for why in s["refused_because"] if "confidence" in why]  # LLM decisions execute too
    assert s["audit"]["valid"] is True and s["audit"]["events"] > 40


def test_a_revoked_agent_cannot_execute_its_earlier_decision_and_the_refusal_is_audited(gov):
    _, d = first_approved(gov)
    gov.identities.revoke(d.agent, "offboarded")
    with pytest.raises(AuthError) as info:
        gov.execute(d.id)
    assert info.value.code == "auth_identity_revoked"
    assert gov.executor.ledger.executions(d.id) == []
    refused = [ev for ev in gov.audit.trace(d.id) if ev.step == "refused"]
    assert len(refused) == 1 and refused[0].data["code"] == "auth_identity_revoked"


def test_decide_and_execute_with_required_keys(gov):
    n, _ = first_approved(gov)
    fresh = gov
    fresh.require_keys = True
    token = fresh.identities.issue("ap-assistant").token
    d = fresh.decide({**invoice_case(n), "id": "with-key"}, llm=False, execute=True, key=token)
    assert d.agent == "ap-assistant" and d.execution["outcome"] == "done"
    with pytest.raises(AuthError) as info:  # a later `execute` without the key is refused (and audited)
        fresh.execute(d.id)
    assert info.value.code == "auth_required"


def test_executing_right_after_deciding_does_not_verify_twice(gov, monkeypatch):
    n, _ = first_approved(gov)
    import engine.pipeline as pipeline

    calls = []
    original = pipeline.verify_against
    monkeypatch.setattr(pipeline, "verify_against", lambda *a, **k: calls.append(1) or original(*a, **k))
    d = gov.decide(invoice_case(n), llm=False, execute=True)
    assert d.execution["outcome"] == "done" and calls == []  # same graph revision: verified once, by decide
    other = gov.decide(invoice_case(n + 1), llm=False)
    if other.outcome == "execute":
        gov.execute(other.id)  # the graph changed since: re-verified
        assert calls


def test_an_approval_that_settled_a_limit_executes(gov):
    """The reviewer settled the `limit` (or `review` guard) the agent hit: at execution only a
    deny may refuse the approved proposal, not the same review reason again."""
    found = None
    for n in range(10001, 10400):
        d = gov.decide({**invoice_case(n), "agent": "ap-assistant"}, llm=False)
        if d.outcome == "escalate" and d.reason in ("limit", "guard_review") and d.review_id:
            found = d
            break
    assert found is not None, "no invoice escalated for a limit"
    item = gov.review_approve(found.review_id, reviewer="ap-lead")
    res = gov.execute(item.id)
    assert res.outcome == "done", res.refused
    assert gov.review_show(item.id).status == "applied"


def test_a_chain_half_done_before_a_crash_goes_to_a_person_when_the_rest_no_longer_passes(gov):
    import datetime as dt

    for n in range(10001, 10100):
        d1 = gov.decide(invoice_case(n), llm=False)
        if d1.outcome == "execute" and d1.proposals[0].action == "approve_invoice":
            break
    # a chain on the case's own invoice: hold its payment, then approve it
    hold = {"action": "hold_payment", "params": {"invoice": f"{BWD}INV-{n}", "reason": "check first"},
            "source": "rule"}
    gov.decisions.record(id="multi", agent=d1.agent, ruleset=d1.ruleset, outcome="execute", source="rule",
                         case=d1.case.to_json(), proposals=[hold, d1.proposals[0].to_json()])
    conn = gov.executor.connectors["kg"]
    original, calls = conn.execute, []

    def dies_on_the_second_step(action, params, *, key):
        calls.append(action)
        if len(calls) == 2:
            raise KeyboardInterrupt("the process is killed")
        return original(action, params, key=key)

    conn.execute = dies_on_the_second_step
    with pytest.raises(KeyboardInterrupt):
        gov.execute("multi")
    conn.execute = original
    gov.executor.recover(min_age=dt.timedelta(0))
    gov.ws.store.update(f"DELETE {{ ?i <{BW}status> ?s }} INSERT {{ ?i <{BW}status> \"paid\" }} "
                        f"WHERE {{ ?i <{BW}status> ?s }}", {"i": IRI(f"{BWD}INV-{n}")})
    res = gov.execute("multi")
    assert res.outcome == "needs_review" and res.refused, res  # not "refused": step 1 did take effect
    assert gov.executor.ledger.chain("multi").status == "needs_review"
    assert gov.decisions.get("multi").status == "needs_review"
    assert gov.ws.store.objects(f"{BWD}INV-{n}", f"{BW}payment_hold_reason") == ["check first"]


def test_a_refusal_found_at_re_verification_is_audited(gov):
    _, d = first_approved(gov)
    gov.ws.agents.agents[d.agent].rulesets = ("crm.*",)  # the agent lost the ruleset since
    with pytest.raises(AuthError) as info:
        gov.execute(d.id)
    assert info.value.code == "agent_not_permitted"
    assert [ev.step for ev in gov.audit.trace(d.id)][-1] == "refused"


def test_a_reviewer_refusal_is_audited(gov):
    d = gov.decide(discount_case("bwd:SO-3002", 7), llm=False)
    with pytest.raises(AuthError) as info:
        gov.review_reject(d.review_id, reviewer="ap-lead", reason="not mine")
    assert info.value.code == "reviewer_not_permitted"
    refused = [ev for ev in gov.audit.trace(d.id) if ev.step == "refused"]
    assert len(refused) == 1 and refused[0].data["code"] == "reviewer_not_permitted"


def test_the_audit_record_comes_before_the_decision_can_be_executed(gov, monkeypatch):
    from engine.act.decision_store import DecisionNotFound

    def down(*a, **k):
        raise RuntimeError("audit database down")

    monkeypatch.setattr(gov.audit, "append_many", down)
    with pytest.raises(RuntimeError, match="audit database down"):
        first_approved(gov)
    monkeypatch.undo()
    with pytest.raises(DecisionNotFound) as info:
        gov.execute("dec-1")
    assert info.value.code == "decision_not_found" and "no decision `dec-1`" in str(info.value)


def test_a_case_with_a_non_text_agent_is_invalid(gov):
    from engine.errors import CaseError

    with pytest.raises(CaseError) as info:
        gov.decide({**invoice_case(10001), "agent": 5}, llm=False)
    assert info.value.code == "case_invalid"


def test_cli_decide_execute_exits_1_when_the_action_did_not_run(tmp_path, monkeypatch):
    import engine.pipeline as pipeline
    from engine.cli.main import app
    from engine.pipeline import ExecutionOutcome

    monkeypatch.setenv("RULEBRIDGE_STATE_URL", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.setattr(pipeline, "act", lambda deciding, ports, ident, **kw: ExecutionOutcome(
        ident, "refused", [], [{"step": 0, "action": "hold_invoice", "code": "precondition", "id": None,
                                "message": "the invoice changed"}]))
    case = tmp_path / "case.json"
    case.write_text(json.dumps(invoice_case(10004)))
    r = CliRunner().invoke(app, ["decide", str(case), "-w", str(ROOT), "--execute"])
    assert r.exit_code == 1 and "refused" in r.output
    assert "refused step 1 hold_invoice: precondition: the invoice changed" in r.output


def test_an_llm_decision_executes_later_with_the_confidence_it_was_decided_on(sql_url):
    """Regression: re-verification rebuilt an LLM proposal without its confidence, so every LLM
    decision executed later (`execute ID`, the demo) was refused as `low_confidence`."""
    from engine.llm.clients import ScriptedModel
    from tests.brightwater import answer

    e = engine(ScriptedModel([answer(confidence=0.95)]), ws=load_workspace(ROOT), state=sql_url)
    try:
        d = e.decide(discount_case("bwd:SO-3002", 7))
        assert (d.outcome, d.source) == ("execute", "llm")
        res = e.execute(d.id)
        assert res.refused == [] and res.outcome == "done"
    finally:
        e._audit.close()
        if e._executor:
            e._executor.ledger.close()

# -- one state database: what belongs together commits together ------------------------------------------

def _count_commits(e):
    from sqlalchemy import event

    seen = {"n": 0}

    def on_commit(_conn):
        seen["n"] += 1

    stores = (e.audit, e.executor.ledger, e.decisions, e.queue)
    e.identities_if_used()  # opened (its tables made) before counting, as the other stores
    for db in {id(x.db): x.db for x in stores}.values():
        event.listen(db, "commit", on_commit)
    return seen


def test_one_database_an_executed_decision_makes_two_commits_any_other_one(gov):
    assert gov.one_database
    seen = _count_commits(gov)
    executed = escalated = 0
    for n in range(10001, 10040):
        seen["n"] = 0
        d = gov.decide(invoice_case(n), llm=False, execute=True)
        if d.outcome == "execute":
            assert d.execution["outcome"] == "done" and seen["n"] == 2, (n, seen)
            executed += 1
        else:
            assert seen["n"] == 1, (n, d.outcome, seen)
            escalated += d.outcome == "escalate"
            if d.outcome == "escalate":
                assert gov.queue.get(d.review_id).decision_id == d.id
                assert [ev.data["review_id"] for ev in gov.audit.trace(d.id) if ev.step == "decided"] == [d.review_id]
    assert executed and escalated
    assert gov.audit.verify().ok


def test_one_database_a_pending_case_keeps_its_review_item(gov):
    first = second = None
    for n in range(10001, 10100):
        d = gov.decide(invoice_case(n), llm=False)
        if d.outcome == "escalate":
            first = d
            second = gov.decide(invoice_case(n), llm=False)
            break
    assert first is not None and second.review_id == first.review_id  # one pending item per case
    decided = [ev for ev in gov.audit.trace(second.id) if ev.step == "decided"]
    assert decided[0].data["review_id"] == first.review_id and gov.audit.verify().ok


def test_one_database_a_failing_write_leaves_no_half_decision(gov, monkeypatch):
    """The decision record fails after the events were appended in the same unit: as with separate
    commits, the events stay (they came first) and the decision cannot be executed."""
    from engine.act.decision_store import DecisionNotFound

    def down(**kw):
        raise RuntimeError("decision store down")

    monkeypatch.setattr(gov.decisions, "record", down)
    with pytest.raises(RuntimeError, match="decision store down"):
        first_approved(gov)
    monkeypatch.undo()
    ids = {ev.decision_id for ev in gov.audit.events()}
    assert ids and gov.audit.verify().ok
    for i in ids:
        with pytest.raises(DecisionNotFound) as info:
            gov.decisions.get(i)
        assert info.value.code == "decision_not_found"


def test_a_separate_audit_database_commits_each_store_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("RULEBRIDGE_AUDIT_URL", f"sqlite:///{tmp_path}/audit.db")
    e = engine(None, ws=load_workspace(ROOT), state=f"sqlite:///{tmp_path}/state.db")
    try:
        assert not e.one_database
        n, d = first_approved(e)
        res = e.execute(d.id)
        assert res.outcome == "done" and status(e, n) == ["approved"]
        steps = [ev.step for ev in e.audit.trace(d.id)]
        assert steps.index("execution_started") < steps.index("execution_done") < steps.index("executed")
        assert e.audit.verify().ok and e.decisions.get(d.id).status == "executed"
    finally:
        e.audit.close()
        e.executor.ledger.close()


def test_one_database_threads_extend_one_chain_and_execute_each_once(gov):
    import threading

    _ = gov.audit, gov.decisions, gov.queue, gov.executor  # opened before the threads start
    errors, results = [], []

    def work(ns):
        try:
            for n in ns:
                results.append(gov.decide(invoice_case(n), llm=False, execute=True))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(range(10001 + k, 10041, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    executed = [d for d in results if d.outcome == "execute"]
    assert executed and all(d.execution["outcome"] == "done" for d in executed)
    for d in executed:
        assert len(gov.executor.ledger.executions(d.id)) == 1
        assert gov.decisions.get(d.id).status == "executed"
    report = gov.audit.verify()
    assert report.ok and report.checked == gov.audit.head().count


# -- nothing without its events ------------------------------------------------------------------

@pytest.fixture(params=[False, True], ids=["one_database", "separate_audit"])
def either(request, tmp_path, monkeypatch):
    """The engine with its audit log in the state database, or in one of its own."""
    if request.param:
        monkeypatch.setenv("RULEBRIDGE_AUDIT_URL", f"sqlite:///{tmp_path}/audit.db")
    e = engine(None, ws=load_workspace(ROOT), state=f"sqlite:///{tmp_path}/state.db")
    assert e.one_database is not request.param
    yield e
    for store in (e._audit, e._executor.ledger if e._executor else None):
        if store is not None:
            store.close()


def test_a_case_too_large_to_audit_is_refused_up_front(either):
    """Regression: a case with a 10 MB field was decided, its events exceeded the audit log's size
    limit, and its review item stayed pending without a `received`, `facts` or `decided` event —
    approvable and executable. It is refused before anything is decided (`case_too_large`)."""
    from engine.errors import CaseError

    with pytest.raises(CaseError) as info:
        either.decide(discount_case(id="x" * (10 * 1024 * 1024)), llm=False)
    assert info.value.code == "case_too_large" and "at most 262144" in str(info.value)
    assert either.review_list() == []
    assert [(e.step, e.data["code"]) for e in either.audit.events()] == [("refused", "case_too_large")]
    either.max_case_bytes = 1000  # `[security] max_case_bytes`
    with pytest.raises(CaseError) as info:
        either.decide(discount_case(requested_by="bwd:" + "E" * 1000), llm=False)
    assert info.value.code == "case_too_large"
    d = either.decide(discount_case(), llm=False)  # a case of ordinary size is decided as before
    assert d.outcome == "escalate" and [i.id for i in either.review_list()] == [d.review_id]


def test_max_case_bytes_is_read_from_the_security_section():
    import dataclasses

    from engine.config import Config
    from engine.errors import LoadError

    ws = load_workspace(ROOT)
    for value, ok in ((1000, True), (0, False), ("big", False), (10**9, False)):
        data = {**ws.config.data, "security": {**ws.config.section("security"), "max_case_bytes": value}}
        other = dataclasses.replace(ws, config=Config(ws.root, data))
        if ok:
            assert engine(None, ws=other).max_case_bytes == 1000
        else:
            with pytest.raises(LoadError) as info:
                engine(None, ws=other)
            assert info.value.code == "config" and "max_case_bytes" in str(info.value)


def test_an_escalation_whose_events_cannot_be_written_leaves_no_review_item(either, monkeypatch):
    """Regression: the review item was written before the decision's events; when the events failed
    (over the audit size limit here), the item stayed pending without them — the unit of work
    committed what it had, and with a separate audit database it had committed on its own."""
    from engine.audit import AuditError

    monkeypatch.setattr("engine.audit.log.MAX_DATA_BYTES", 600)  # the decision's events do not fit
    with pytest.raises(AuditError) as info:
        either.decide(invoice_case(10006), llm=False)
    assert info.value.code == "audit_invalid"
    assert either.review_list(None) == [] and list(either.audit.events()) == []
    monkeypatch.undo()
    d = either.decide(invoice_case(10006), llm=False)  # the same case, now that its events fit
    assert d.outcome == "escalate" and [i.id for i in either.review_list()] == [d.review_id]
    assert [ev.step for ev in either.audit.trace(d.id)][-1] == "decided" and either.audit.verify().ok
