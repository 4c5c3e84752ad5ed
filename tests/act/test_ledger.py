"""The execution ledger (`engine/act/ledger.py`) on a real SQLite file and a real PostgreSQL schema:
idempotency keys, atomic claims, fenced state changes, the database's invariants."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from engine.act.ledger import Ledger, LedgerError, idempotency_key
from engine.canonical import digest, proposal_hash

T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
PARAMS = {"account": "A1", "amount": 40}


@pytest.fixture
def ledger(sql_url):
    led = Ledger(sql_url)
    yield led
    led.close()


def claim(led: Ledger, key: str, *, step: int = 0, decision: str = "d1", now: dt.datetime = T0, **kw):
    return led.claim(key, decision_id=decision, chain_id="c1", step=step, action="debit", params=PARAMS,
                     connector="erp", agent="svc", now=now, **kw)


def key(step: int = 0, decision: str = "d1", params: dict | None = None, **kw) -> str:
    return idempotency_key(decision, step, "debit", PARAMS if params is None else params, **kw)


# -- idempotency keys ------------------------------------------------------------------------------

def test_key_is_stable_and_ignores_key_order():
    assert key() == key(params={"amount": 40, "account": "A1"})
    assert len(key()) == 64 and int(key(), 16) >= 0


@pytest.mark.parametrize("other", [
    {"decision": "d2"}, {"step": 1}, {"params": {"account": "A1", "amount": 41}},
    {"params": {"account": "A1", "amount": 40, "note": ""}}, {"compensation": True}],
    ids=["decision", "step", "value", "extra-param", "compensation"])
def test_key_differs_with_every_input(other):
    assert key(**other) != key()


def test_key_differs_with_the_action():
    assert idempotency_key("d1", 0, "credit", PARAMS) != key()


def test_key_binds_the_same_proposal_hash_as_an_approval():
    """The key is the digest of the decision, the step and the proposal hash a reviewer approves."""
    for params in (PARAMS, {"order": "bwd:SO-1", "percent": 7.5, "lines": [1, {"b": 2, "a": "é"}]}, {}):
        body = {"decision_id": "d1", "step": 0, "phase": "execute",
                "proposal": proposal_hash("approve_discount", params)}
        assert idempotency_key("d1", 0, "approve_discount", params) == digest(body)


# -- claims ----------------------------------------------------------------------------------------

def test_first_claim_wins_and_a_second_gets_the_record(ledger):
    first = claim(ledger, key())
    assert first.won and first.record.status == "started" and first.record.attempts == 1
    assert first.record.started_at == T0 and first.record.params == PARAMS and first.record.agent == "svc"
    second = claim(ledger, key())
    assert not second.won and second.record.status == "started"


def test_a_done_execution_is_returned_with_its_result(ledger):
    claim(ledger, key())
    assert ledger.finish(key(), attempt=1, status="done", result={"journal_id": 7}, now=T0)
    again = claim(ledger, key())
    assert not again.won and again.record.status == "done" and again.record.result == {"journal_id": 7}
    assert again.record.finished_at == T0


def test_threads_racing_on_one_key_one_wins(ledger):
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def go():
        barrier.wait()
        won.append(claim(ledger, key()).won)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]


def test_separate_ledgers_racing_on_one_key_one_wins(sql_url):
    """Eight ledgers (eight connection pools, as eight processes would have) on one database."""
    ledgers = [Ledger(sql_url) for _ in range(8)]
    barrier = threading.Barrier(len(ledgers))
    won: list[bool] = []

    def go(led):
        barrier.wait()
        won.append(claim(led, key()).won)

    threads = [threading.Thread(target=go, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for led in ledgers:
        led.close()
    assert sorted(won) == [False] * 7 + [True]


# -- fenced state changes --------------------------------------------------------------------------

def test_finish_needs_the_claims_attempt_and_happens_once(ledger):
    claim(ledger, key())
    assert not ledger.finish(key(), attempt=2, status="done", now=T0)
    assert ledger.finish(key(), attempt=1, status="failed", error_code="connector_permanent",
                         error_message="refused", now=T0)
    assert not ledger.finish(key(), attempt=1, status="done", now=T0)
    rec = ledger.get(key())
    assert (rec.status, rec.error_code, rec.error_message, rec.retryable) == ("failed", "connector_permanent",
                                                                              "refused", False)


def test_a_failed_execution_is_not_claimed_again(ledger):
    claim(ledger, key())
    ledger.finish(key(), attempt=1, status="failed", error_code="connector_permanent", error_message="no", now=T0)
    again = claim(ledger, key())
    assert not again.won and again.record.status == "failed"


def test_a_retryable_execution_is_claimed_again_once_with_a_new_attempt(ledger):
    claim(ledger, key())
    ledger.finish(key(), attempt=1, status="failed", retryable=True, error_code="execution_interrupted",
                  error_message="died", now=T0)
    later = T0 + dt.timedelta(minutes=5)
    second = claim(ledger, key(), now=later)
    assert second.won and second.record.attempts == 2 and second.record.status == "started"
    assert second.record.started_at == later and second.record.error_code is None
    assert not claim(ledger, key()).won
    assert not ledger.finish(key(), attempt=1, status="done", now=later)  # the old attempt is fenced off
    assert ledger.finish(key(), attempt=2, status="done", now=later)


def test_move_is_conditional(ledger):
    claim(ledger, key())
    assert not ledger.move(key(), from_=("done",), to="compensating", now=T0)
    ledger.finish(key(), attempt=1, status="done", now=T0)
    assert ledger.move(key(), from_=("done",), to="compensating", now=T0)
    assert not ledger.move(key(), from_=("done",), to="compensating", now=T0)
    assert ledger.get(key()).status == "compensating"


def test_started_lists_in_flight_executions_by_age(ledger):
    claim(ledger, key(0), step=0, now=T0)
    claim(ledger, key(1), step=1, now=T0 + dt.timedelta(minutes=10))
    assert [r.key for r in ledger.started()] == [key(0), key(1)]
    assert [r.key for r in ledger.started(before=T0 + dt.timedelta(minutes=1))] == [key(0)]
    ledger.finish(key(0), attempt=1, status="done", now=T0)
    assert [r.key for r in ledger.started()] == [key(1)]


# -- the database's invariants ---------------------------------------------------------------------

def test_one_forward_execution_per_step_of_a_decision(ledger):
    claim(ledger, key(0))
    other = idempotency_key("d1", 0, "credit", PARAMS)
    with pytest.raises(LedgerError) as info:
        claim(ledger, other, step=0)
    assert info.value.code == "step_conflict"
    assert ledger.get(other) is None


def test_one_compensation_per_execution(ledger):
    claim(ledger, key(0))
    assert claim(ledger, key(0, compensation=True), compensates=key(0)).won
    with pytest.raises(LedgerError) as info:
        claim(ledger, key(0, params={"account": "A2", "amount": 1}, compensation=True), compensates=key(0))
    assert info.value.code == "step_conflict"


def test_one_chain_per_decision(ledger):
    first = ledger.open_chain(decision_id="d1", chain_id="c1", agent="svc", plan=[{"a": 1}], plan_hash="h1", now=T0)
    second = ledger.open_chain(decision_id="d1", chain_id="c2", agent="svc", plan=[{"a": 2}], plan_hash="h2",
                               now=T0 + dt.timedelta(hours=1))
    assert first == second and second.plan_hash == "h1" and second.status == "running"


def test_chain_moves_are_conditional_and_final_ones_are_stamped(ledger):
    ledger.open_chain(decision_id="d1", chain_id="c1", agent="svc", plan=[], plan_hash="h", now=T0)
    later = T0 + dt.timedelta(seconds=3)
    assert ledger.move_chain("d1", from_=("running",), to="compensating", failed_step=1, now=later)
    assert not ledger.move_chain("d1", from_=("running",), to="done", now=later)
    assert ledger.move_chain("d1", from_=("compensating",), to="failed_compensated", now=later)
    c = ledger.chain("d1")
    assert (c.status, c.failed_step, c.finished_at, c.updated_at) == ("failed_compensated", 1, later, later)
    assert [x.decision_id for x in ledger.chains(statuses=("failed_compensated",))] == ["d1"]
    assert ledger.chains(statuses=("running",)) == []


def test_an_unreachable_database_is_a_typed_error():
    with pytest.raises(LedgerError) as info:
        Ledger("postgresql+psycopg://nobody:x@127.0.0.1:1/none?connect_timeout=2")
    assert info.value.code == "ledger_unavailable"
    assert "execution ledger is unavailable" in str(info.value)
