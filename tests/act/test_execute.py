"""The executor (`engine/act/execute.py`): chains run exactly once, compensation, recovery — against
real SQLite systems of record (`tests/act/records.py`) and the ledger on SQLite and PostgreSQL.

A crash inside the process is simulated by `Crash`, a BaseException the executor does not catch:
the ledger is left exactly as a killed process would leave it. The real SIGKILL runs are in
tests/chaos/.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.act.connectors.base import PermanentError, TransientError
from engine.act.execute import ExecutionError, Executor, Step
from engine.act.ledger import Ledger, idempotency_key
from tests.act.records import BlindRecord, FailingRecord, SqliteRecord

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


class Crash(BaseException):
    """The process dies here (nothing after it runs, nothing is cleaned up)."""


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += dt.timedelta(**kw)


class World:
    """One ledger, three systems of record, the audit events, and an executor over them."""

    def __init__(self, url: str, folder: Path):
        self.url, self.folder = url, folder
        self.ledger = Ledger(url)
        self.erp = SqliteRecord(folder / "erp.db", name="erp")
        self.crm = BlindRecord(folder / "crm.db", name="crm")
        self.flaky = FailingRecord(folder / "flaky.db", name="flaky")
        self.events: list[tuple[str, str, dict]] = []
        self.clock = Clock()
        self.executor = self.new_executor()

    @property
    def connectors(self):
        return {"erp": self.erp, "crm": self.crm, "flaky": self.flaky}

    def new_executor(self, connectors=None) -> Executor:
        """An executor as a restarted process would build it (same ledger database, same systems)."""
        return Executor(self.ledger, connectors or self.connectors, now=self.clock,
                        audit=lambda d, step, data: self.events.append((d, step, data)))

    def names(self, decision_id: str | None = None) -> list[str]:
        return [e for d, e, _ in self.events if decision_id in (None, d)]


@pytest.fixture
def w(sql_url, tmp_path):
    world = World(sql_url, tmp_path)
    yield world
    world.ledger.close()


def debit(account: str, amount: int, connector: str = "erp", **extra) -> Step:
    return Step("debit", {"account": account, "amount": amount, **extra}, connector,
                Step("credit", {"account": account, "amount": amount}, connector))


def fkey(d: str, i: int, step: Step) -> str:
    return idempotency_key(d, i, step.action, step.params)


def ckey(d: str, i: int, step: Step) -> str:
    assert step.inverse is not None
    return idempotency_key(d, i, step.inverse.action, step.inverse.params, compensation=True)


CHAIN = [debit("A1", 40), debit("A2", 2), Step("notify", {"to": "ops"}, "erp")]


# -- a chain that succeeds -------------------------------------------------------------------------

def test_chain_runs_every_step_in_order(w):
    res = w.executor.run("d1", "svc", CHAIN)
    assert res.outcome == "done"
    assert [(s.status, s.compensation) for s in res.steps] == [("done", None)] * 3
    assert [a for _, a, _ in w.erp.journal()] == ["debit", "debit", "notify"]
    assert (w.erp.balance("A1"), w.erp.balance("A2")) == (-40, -2)
    assert res.executed == [fkey("d1", i, s) for i, s in enumerate(CHAIN)]
    assert res.steps[0].result == {"journal_id": 1}
    assert w.names() == ["execution_started", "execution_done"] * 3 + ["chain_finished"]
    started = w.events[0][2]
    assert started["params"] == {"account": "A1", "amount": 40} and started["agent"] == "svc"
    assert started["key"] == fkey("d1", 0, CHAIN[0]) and started["connector"] == "erp"
    assert w.events[-1][2]["outcome"] == "done"
    chain = w.ledger.chain("d1")
    assert chain.status == "done" and chain.finished_at == T0 and chain.agent == "svc"


def test_the_same_decision_twice_executes_each_step_once(w):
    first = w.executor.run("d1", "svc", CHAIN)
    again = w.executor.run("d1", "svc", CHAIN)
    assert again.outcome == "done" and again.executed == []
    assert [s.result for s in again.steps] == [s.result for s in first.steps]
    assert all(w.erp.times(fkey("d1", i, s)) == 1 for i, s in enumerate(CHAIN))
    assert w.erp.balance("A1") == -40
    assert w.names().count("execution_started") == 3


def test_a_new_process_does_not_run_a_finished_chain_again(w):
    w.executor.run("d1", "svc", CHAIN)
    res = w.new_executor().run("d1", "svc", CHAIN)
    assert res.outcome == "done" and res.executed == [] and len(w.erp.journal()) == 3


def test_two_decisions_with_the_same_action_are_two_executions(w):
    w.executor.run("d1", "svc", [debit("A1", 5)])
    w.executor.run("d2", "svc", [debit("A1", 5)])
    assert w.erp.balance("A1") == -10


# -- failures and compensation ---------------------------------------------------------------------

def test_failure_at_step_2_compensates_step_1_exactly_once(w):
    chain = [debit("A1", 40), debit("A2", 2, fail="permanent")]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "failed_compensated"
    assert [(s.status, s.compensation) for s in res.steps] == [("compensated", "done"), ("failed", None)]
    assert res.steps[1].error_code == "connector_permanent" and res.error_code == "connector_permanent"
    assert w.erp.times(ckey("d1", 0, chain[0])) == 1 and w.erp.balance("A1") == 0
    assert w.names() == ["execution_started", "execution_done", "execution_started", "execution_failed",
                         "compensation_started", "execution_done", "compensated", "chain_finished"]
    again = w.executor.run("d1", "svc", chain)
    assert again.outcome == "failed_compensated" and again.executed == []
    assert w.erp.times(ckey("d1", 0, chain[0])) == 1 and w.erp.times(fkey("d1", 1, chain[1])) == 0


def test_compensation_runs_in_reverse_order(w):
    chain = [debit("A1", 1), debit("A2", 2), debit("A3", 3), debit("A1", 9, fail="permanent")]
    assert w.executor.run("d1", "svc", chain).outcome == "failed_compensated"
    assert [(a, p["account"]) for _, a, p in w.erp.journal()] == [
        ("debit", "A1"), ("debit", "A2"), ("debit", "A3"), ("credit", "A3"), ("credit", "A2"), ("credit", "A1")]
    assert all(w.erp.balance(a) == 0 for a in ("A1", "A2", "A3"))


def test_a_first_step_that_fails_leaves_nothing_to_undo(w):
    res = w.executor.run("d1", "svc", [debit("A1", 1, fail="permanent"), debit("A2", 2)])
    assert res.outcome == "failed_compensated" and [s.status for s in res.steps] == ["failed", None]
    assert w.erp.journal() == []


def test_a_done_step_without_an_inverse_needs_review(w):
    chain = [Step("notify", {"to": "customer"}, "erp"), debit("A1", 40), debit("A2", 2, fail="permanent")]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "failed_needs_review" and res.error_code == "no_inverse"
    assert "step 0 (`notify`) is done and has no inverse" in res.error_message
    # the later step is undone; the one that cannot be undone stays done, for a person
    assert [(s.status, s.compensation) for s in res.steps] == [("done", None), ("compensated", "done"),
                                                               ("failed", None)]
    assert w.names()[-2:] == ["needs_review", "chain_finished"]
    assert w.executor.run("d1", "svc", chain).executed == []


def test_a_failing_compensation_needs_review(w):
    chain = [debit("A1", 40, "flaky"), debit("A2", 2, fail="permanent")]
    orig = w.flaky.execute  # the flaky system refuses the compensation of step 0

    def refuse_credit(action, params, *, key):
        if action == "credit":
            raise PermanentError("credit refused: account closed")
        return orig(action, params, key=key)

    w.flaky.execute = refuse_credit  # type: ignore[method-assign]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "failed_needs_review" and res.error_code == "compensation_failed"
    assert [(s.status, s.compensation) for s in res.steps] == [("needs_review", "failed"), ("failed", None)]
    rec = w.ledger.get(fkey("d1", 0, chain[0]))
    assert rec.error_code == "compensation_failed" and "credit refused" in rec.error_message
    assert w.flaky.balance("A1") == -40  # the debit stands: a person decides
    assert "compensation_failed" in w.names() and w.names()[-3:] == ["needs_review", "needs_review", "chain_finished"]
    assert w.executor.run("d1", "svc", chain).executed == []


def test_an_unexpected_exception_counts_as_a_failure_after_asking_the_connector(w):
    w.flaky.fail_next = [ValueError("bug in the connector")]
    chain = [debit("A1", 40), debit("A2", 2, "flaky")]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "failed_compensated" and res.steps[1].error_code == "connector_error"
    assert w.erp.balance("A1") == 0


def test_transient_failure_not_done_fails_and_compensates(w):
    w.flaky.fail_next = [TransientError("timed out after 3 attempts")]
    chain = [debit("A1", 40), debit("A2", 2, "flaky")]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "failed_compensated"
    assert (res.steps[1].status, res.steps[1].error_code) == ("failed", "connector_transient")


def test_transient_failure_that_took_effect_counts_as_done(w):
    """A timeout after the system committed: the connector's status says done, the chain goes on."""
    chain = [debit("A1", 40, "flaky"), debit("A2", 2)]
    w.flaky.after_commit = lambda action, key: (_ for _ in ()).throw(TransientError("read timed out"))
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "done" and w.flaky.times(fkey("d1", 0, chain[0])) == 1
    rec = w.ledger.get(fkey("d1", 0, chain[0]))
    assert rec.reconciled and rec.status == "done" and rec.error_code == "connector_transient"
    assert w.names()[:2] == ["execution_started", "reconciled"]


def test_transient_failure_nobody_can_confirm_needs_review_without_compensating(w):
    """The effect may have happened: undoing earlier steps would be a guess, so nothing more runs."""
    chain = [debit("A1", 40), debit("A2", 2, "flaky"), debit("A3", 3)]
    w.flaky.fail_next = [TransientError("timed out")]
    w.flaky.status_answer = "unknown"
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "needs_review" and res.error_code == "status_unknown"
    assert [s.status for s in res.steps] == ["done", "needs_review", None]
    assert w.erp.balance("A1") == -40 and w.erp.balance("A3") == 0


def test_a_connector_whose_status_raises_cannot_confirm(w):
    chain = [debit("A1", 2, "flaky")]
    w.flaky.fail_next = [TransientError("timed out")]
    w.flaky.status = lambda key: (_ for _ in ()).throw(TransientError("status down"))  # type: ignore[method-assign]
    assert w.executor.run("d1", "svc", chain).outcome == "needs_review"


def test_an_open_circuit_is_a_failure_without_asking_the_system(w):
    """The breaker refused the call before it reached the system (and refuses `status` too)."""
    w.flaky.fail_next = [TransientError("circuit open", code="connector_circuit_open")]
    w.flaky.status = lambda key: (_ for _ in ()).throw(  # type: ignore[method-assign]
        TransientError("circuit open", code="connector_circuit_open"))
    chain = [debit("A1", 40), debit("A2", 2, "flaky")]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "failed_compensated" and res.steps[1].error_code == "connector_circuit_open"
    assert w.erp.balance("A1") == 0


# -- refused before anything runs ------------------------------------------------------------------

@pytest.mark.parametrize("steps, code, message", [
    ([], "empty_chain", "a chain needs at least one step"),
    ([Step("debit", {"account": "A1", "amount": 1}, "")], "no_connector", "step 0 (`debit`) names no connector"),
    ([debit("A1", 1), Step("debit", {}, "ledgr")], "unknown_connector",
     "step 1 (`debit`) names an unknown connector `ledgr`: known connectors: `crm`, `erp`, `flaky`"),
    ([Step("debit", {}, "erp", Step("credit", {}, ""))], "no_connector",
     "inverse of step 0 (`credit`) names no connector"),
    ([Step("debit", {}, "erp", Step("credit", {}, "erp", Step("debit", {}, "erp")))], "invalid_chain",
     "the inverse of step 0 (`debit`) has an inverse itself"),
], ids=["empty", "no-connector", "unknown-connector", "inverse-without-connector", "nested-inverse"])
def test_invalid_chains_are_refused_before_anything_runs(w, steps, code, message):
    with pytest.raises(ExecutionError) as info:
        w.executor.run("d1", "svc", steps)
    assert info.value.code == code and str(info.value) == message
    assert w.ledger.chain("d1") is None and w.ledger.executions() == [] and w.erp.journal() == [] and not w.events


def test_a_different_chain_for_a_recorded_decision_is_refused(w):
    w.executor.run("d1", "svc", [debit("A1", 40)])
    with pytest.raises(ExecutionError) as info:
        w.executor.run("d1", "svc", [debit("A1", 41)])
    assert info.value.code == "chain_mismatch" and "already has a different chain" in str(info.value)
    assert w.erp.balance("A1") == -40


# -- another process holds a step ------------------------------------------------------------------

def test_a_step_another_process_is_running_is_in_progress(w):
    chain = [debit("A1", 40), debit("A2", 2)]
    w.erp.after_commit = lambda action, key: (_ for _ in ()).throw(Crash())
    with pytest.raises(Crash):
        w.executor.run("d1", "svc", chain)  # "the other process", stopped between its commit and `done`
    w.erp.after_commit = None
    res = w.new_executor().run("d1", "svc", chain)
    assert res.outcome == "in_progress" and res.executed == [] and w.erp.times(fkey("d1", 0, chain[0])) == 1


# -- recovery --------------------------------------------------------------------------------------

def crash_at(w: World, chain: list[Step], *, when: str, action: str = "debit", nth: int = 1) -> None:
    """Run `chain` as d1 and die `when` ("before" or "after" the system commits) the n-th `action`."""
    seen = {"n": 0}
    originals = {name: c.execute for name, c in w.connectors.items()}

    def wrap(name):
        def execute(a, params, *, key):
            if a == action:
                seen["n"] += 1
                if seen["n"] == nth and when == "before":
                    raise Crash()
            out = originals[name](a, params, key=key)
            if a == action and seen["n"] == nth and when == "after":
                raise Crash()
            return out
        return execute

    for name, c in w.connectors.items():
        c.execute = wrap(name)  # type: ignore[method-assign]
    try:
        with pytest.raises(Crash):
            w.executor.run("d1", "svc", chain)
    finally:
        for name, c in w.connectors.items():
            c.execute = originals[name]  # type: ignore[method-assign]


def test_recover_done_is_reconciled_and_not_run_again(w):
    chain = [debit("A1", 40), debit("A2", 2)]
    crash_at(w, chain, when="after", nth=2)
    assert w.ledger.get(fkey("d1", 1, chain[1])).status == "started"
    w.events.clear()
    report = w.new_executor().recover()
    assert report.reconciled_done == [fkey("d1", 1, chain[1])] and report.retryable == []
    assert report.finished == {"d1": "done"} and report.pending == []  # every step done: the chain is
    assert w.names() == ["reconciled", "chain_finished"]
    assert w.events[0][2]["connector_status"] == "done"
    rec = w.ledger.get(fkey("d1", 1, chain[1]))
    assert rec.status == "done" and rec.reconciled and rec.attempts == 1
    assert w.executor.run("d1", "svc", chain).executed == []
    assert w.erp.times(fkey("d1", 1, chain[1])) == 1 and w.erp.balance("A2") == -2


def test_recover_not_done_is_retried_by_the_next_run(w):
    chain = [debit("A1", 40), debit("A2", 2), debit("A3", 3)]
    crash_at(w, chain, when="before", nth=2)
    report = w.new_executor().recover()
    assert report.retryable == [fkey("d1", 1, chain[1])] and report.pending == ["d1"] and report.finished == {}
    rec = w.ledger.get(fkey("d1", 1, chain[1]))
    assert (rec.status, rec.retryable, rec.error_code) == ("failed", True, "execution_interrupted")
    assert w.ledger.chain("d1").status == "running"
    res = w.new_executor().run("d1", "svc", chain)
    assert res.outcome == "done" and res.executed == [fkey("d1", 1, chain[1]), fkey("d1", 2, chain[2])]
    assert w.ledger.get(fkey("d1", 1, chain[1])).attempts == 2
    assert [w.erp.times(fkey("d1", i, s)) for i, s in enumerate(chain)] == [1, 1, 1]


def test_recover_unknown_needs_review_and_runs_nothing(w):
    chain = [debit("A1", 40), debit("A2", 2, "crm"), debit("A3", 3)]
    crash_at(w, chain, when="after", nth=2)
    report = w.new_executor().recover()
    key = fkey("d1", 1, chain[1])
    assert report.needs_review == [key] and report.finished == {"d1": "needs_review"} and report.pending == []
    rec = w.ledger.get(key)
    assert (rec.status, rec.error_code) == ("needs_review", "status_unknown")
    assert "cannot tell" in rec.error_message
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "needs_review" and res.executed == []
    assert w.crm.times(key) == 1 and w.erp.balance("A3") == 0


def test_recover_without_the_connector_needs_review(w):
    chain = [debit("A1", 40)]
    crash_at(w, chain, when="before")
    report = w.new_executor({"crm": w.crm}).recover()
    assert report.needs_review == [fkey("d1", 0, chain[0])]
    assert "no connector `erp`" in w.ledger.get(fkey("d1", 0, chain[0])).error_message


def test_recover_leaves_young_executions_alone(w):
    chain = [debit("A1", 40)]
    crash_at(w, chain, when="before")
    w.clock.advance(seconds=30)
    report = w.new_executor().recover(min_age=dt.timedelta(minutes=5))
    assert report.retryable == [] and w.ledger.get(fkey("d1", 0, chain[0])).status == "started"
    w.clock.advance(minutes=5)
    assert w.new_executor().recover(min_age=dt.timedelta(minutes=5)).retryable == [fkey("d1", 0, chain[0])]


def test_recover_finishes_a_chain_whose_failure_was_recorded(w):
    """The process died after recording a failed step, before compensating."""
    chain = [debit("A1", 40), debit("A2", 2, fail="permanent")]
    original = w.ledger.move_chain

    def die_before_compensating(*a, **kw):
        raise Crash()

    w.ledger.move_chain = die_before_compensating  # type: ignore[method-assign]
    with pytest.raises(Crash):
        w.executor.run("d1", "svc", chain)
    w.ledger.move_chain = original  # type: ignore[method-assign]
    assert w.ledger.chain("d1").status == "running"
    report = w.new_executor().recover()
    assert report.finished == {"d1": "failed_compensated"} and report.pending == []
    assert w.erp.balance("A1") == 0 and w.erp.times(ckey("d1", 0, chain[0])) == 1


@pytest.mark.parametrize("when", ["before", "after"])
def test_recover_resumes_a_compensation(w, when):
    """Killed while undoing step 1 (before / after the system committed the credit): recovery
    finishes the compensation, each credit exactly once."""
    chain = [debit("A1", 40), debit("A2", 2), debit("A3", 3, fail="permanent")]
    crash_at(w, chain, when=when, action="credit", nth=1)
    assert w.ledger.chain("d1").status == "compensating"
    assert w.ledger.get(fkey("d1", 1, chain[1])).status == "compensating"
    report = w.new_executor().recover()
    assert report.finished == {"d1": "failed_compensated"}
    assert (report.reconciled_done, report.retryable) == (([ckey("d1", 1, chain[1])], []) if when == "after"
                                                          else ([], [ckey("d1", 1, chain[1])]))
    assert [w.erp.times(ckey("d1", i, s)) for i, s in enumerate(chain[:2])] == [1, 1]
    assert w.erp.balance("A1") == w.erp.balance("A2") == 0
    assert w.executor.run("d1", "svc", chain).executed == []


def test_recover_twice_changes_nothing_the_second_time(w):
    chain = [debit("A1", 40), debit("A2", 2)]
    crash_at(w, chain, when="before", nth=2)
    w.new_executor().recover()
    before = w.ledger.executions()
    second = w.new_executor().recover()
    assert (second.retryable, second.reconciled_done, second.needs_review, second.finished) == ([], [], [], {})
    assert second.pending == ["d1"] and w.ledger.executions() == before


def test_a_recovery_that_takes_a_live_execution_ends_in_review(w):
    """A recovery run with too short a `min_age` while the execution is in flight: the executor
    loses its claim, so its outcome cannot be trusted to the ledger — fail closed."""
    chain = [debit("A1", 40, "flaky")]
    other = w.new_executor()
    orig = w.flaky.execute

    def execute(action, params, *, key):
        other.recover()  # "another process" restarts meanwhile and finds the row started, not done
        return orig(action, params, key=key)

    w.flaky.execute = execute  # type: ignore[method-assign]
    res = w.executor.run("d1", "svc", chain)
    assert res.outcome == "needs_review" and res.steps[0].error_code == "ledger_conflict"
    assert w.flaky.times(fkey("d1", 0, chain[0])) == 1
    w.flaky.execute = orig  # type: ignore[method-assign]
    assert w.executor.run("d1", "svc", chain).executed == []


@pytest.mark.parametrize("lost_event", ["execution_done", "chain_finished"])
def test_recover_appends_the_audit_events_a_dead_process_owed(w, lost_event):
    """Killed after the ledger recorded a state change, before the audit log had its event."""
    chain = [debit("A1", 40)]

    def audit_then_die(d, event, data):
        if event == lost_event:
            raise Crash()
        w.events.append((d, event, data))

    dying = Executor(w.ledger, w.connectors, now=w.clock, audit=audit_then_die)
    with pytest.raises(Crash):
        dying.run("d1", "svc", chain)
    assert lost_event not in w.names()
    report = w.new_executor().recover()
    assert report.audit_replayed == 1 and w.names()[-1] == lost_event and w.events[-1][2]["replayed"] is True
    if lost_event == "execution_done":
        assert w.events[-1][2]["key"] == fkey("d1", 0, chain[0]) and w.events[-1][2]["status"] == "done"
        assert w.ledger.chain("d1").status == "done"  # every step done: recovery finished the chain too
        assert w.names()[-2:] == ["chain_finished", "execution_done"]
    else:
        assert w.events[-1][2]["outcome"] == "done"
    assert w.new_executor().recover().audit_replayed == 0


def test_every_state_is_audited_once_without_a_crash(w):
    w.executor.run("d1", "svc", [debit("A1", 40), debit("A2", 2, fail="permanent")])
    assert w.new_executor().recover().audit_replayed == 0
    assert all(r.audited == r.status for r in w.ledger.executions())


# -- processes racing on one decision --------------------------------------------------------------

def test_processes_racing_on_the_same_decisions_execute_each_step_once(sql_url, tmp_path):
    """Four real processes run the same decisions (successes and compensations) at once."""
    from tests.chaos.scenario import check, decisions, records

    seed = 11
    Ledger(sql_url).close()
    recs = records(tmp_path)
    env = {**os.environ, "RULEBRIDGE_CHAOS_SEED": str(seed), "RULEBRIDGE_CHAOS_DIR": str(tmp_path),
           "RULEBRIDGE_CHAOS_LEDGER_URL": sql_url, "RULEBRIDGE_CHAOS_AUDIT_URL": "", "RULEBRIDGE_CHAOS_KILL": ""}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "chaos" / "child.py")], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ledger = Ledger(sql_url)
    try:
        findings = check(ledger, recs, decisions(seed))
        assert (findings.lost, findings.doubled, findings.inconsistent) == ([], [], [])
        assert ledger.started() == [] and {c.status for c in ledger.chains()} <= {"done", "failed_compensated",
                                                                                  "failed_needs_review"}
    finally:
        ledger.close()

