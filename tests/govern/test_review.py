"""The review queue (`engine/govern/review.py`) and the review operations of the facade, on the
Brightwater workspace with a real database per test (SQLite, and PostgreSQL via `sql_url`)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from engine.canonical import proposal_hash
from engine.govern.review import ReviewError, ReviewQueue
from engine.llm.clients import ScriptedModel
from tests.brightwater import BWD, answer, discount_case, engine

T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    """An injected wall clock the test moves by hand."""

    def __init__(self, t: dt.datetime = T0):
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += dt.timedelta(**kw)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db(sql_url):
    """The state database: SQLite, and PostgreSQL when the test server is there."""
    return sql_url


@pytest.fixture
def eng(db, clock):
    return engine(None, state=db, now=clock)


def llm_engine(db, clock, *answers):
    return engine(ScriptedModel(list(answers)), state=db, now=clock)


def over_limit(db, clock):
    """SO-3005 at 25 %: no rule decides, the model proposes 25 %, the sales agent's limit (20 %)
    sends it to a person. Returns (engine, decision)."""
    e = llm_engine(db, clock, answer(params={"order": "bwd:SO-3005", "percent": 25}))
    d = e.decide(discount_case("bwd:SO-3005", 25))
    assert d.outcome == "escalate" and d.reason == "limit", d
    return e, d


def no_proposal(eng, **kw):
    """SO-3002 at 7 % without the model: nobody proposes anything, a person must decide."""
    d = eng.decide(discount_case(**kw), llm=False)
    assert d.outcome == "escalate" and d.reason == "no_rule_matched" and d.review_id
    return d


# -- enqueue ----------------------------------------------------------------------------------------

def test_escalation_is_enqueued_with_its_full_context(db, clock):
    e, d = over_limit(db, clock)
    item = e.review_show(d.review_id)
    assert item.status == "pending"
    assert item.decision_id == d.id
    assert (item.ruleset, item.case_type, item.agent) == ("crm.discount_approval", "discount.requested",
                                                          "sales-assistant")
    assert item.reason == "limit" and "up to 20%" in item.message
    assert item.proposal["action"] == "approve_discount"
    assert item.proposal["params"] == {"order": BWD + "SO-3005", "percent": 25.0}
    assert item.proposal["source"] == "llm" and item.proposal["confidence"] == 0.95
    assert item.proposal_hash == proposal_hash("approve_discount", {"order": BWD + "SO-3005", "percent": 25.0})
    ctx = item.context
    assert ctx["case"]["payload"]["order"] == "bwd:SO-3005"
    assert ctx["outcome"] == "escalate" and ctx["source"] == "llm"
    assert ctx["facts"]["case.order.customer.tier"]  # the facts the rules read
    assert ctx["provenance"]  # and the triples they came from
    assert [c["code"] for c in ctx["checks"]] == ["limit"]
    assert ctx["llm"]["attempts"][0]["raw"]  # what the model said
    assert item.created_at == T0 and item.expires_at == T0 + dt.timedelta(hours=72)


def test_no_review_flag_enqueues_nothing(eng):
    d = eng.decide(discount_case(), llm=False, review=False)
    assert d.outcome == "escalate" and d.review_id is None
    assert eng.review_list() == []


def test_decisions_that_need_no_person_are_not_enqueued(eng):
    for case in (discount_case("bwd:SO-3002", 5), discount_case("bwd:SO-3004", 12, agent="ops-console")):
        d = eng.decide(case)
        assert d.outcome in ("execute", "deny") and d.review_id is None
    assert eng.review_list(None) == []


def test_the_same_pending_case_is_enqueued_once(eng):
    first = no_proposal(eng)
    second = no_proposal(eng)
    assert first.id != second.id
    assert first.review_id == second.review_id
    assert len(eng.review_list()) == 1
    other = no_proposal(eng, percent=6)  # a different case is a different item
    assert other.review_id != first.review_id and len(eng.review_list()) == 2


def test_a_case_id_identifies_the_case_only_with_its_content(eng):
    """The same `id` with the same content waits in one item; under another payload it is another
    case (it used to be folded into the first one's item, see the regression test below)."""
    a = no_proposal(eng, id="CASE-1")
    assert no_proposal(eng, id="CASE-1").review_id == a.review_id
    b = eng.decide(discount_case(percent=6, id="CASE-1"), llm=False)
    assert b.review_id != a.review_id and len(eng.review_list()) == 2


def test_a_decided_case_can_be_enqueued_again(eng, clock):
    first = no_proposal(eng)
    eng.review_reject(first.review_id, reviewer="sales-ops-lead", reason="not now")
    clock.advance(minutes=1)
    again = no_proposal(eng)
    assert again.review_id != first.review_id
    assert [i.status for i in eng.review_list(None)] == ["rejected", "pending"]


def invoice(n: int, agent: str, **extra) -> dict:
    """An invoice case with a fixed `id`: 10006, 10008 and 10009 escalate for either agent."""
    return {"type": "invoice.received", "id": "case-7", "as_of": "2026-11-01", "agent": agent,
            "payload": {"invoice": f"bwd:INV-{n}"}, **extra}


@pytest.mark.parametrize("separate", [False, True], ids=["one_database", "separate_audit"])
def test_cases_sharing_an_id_do_not_share_a_review_item(db, clock, separate, tmp_path, monkeypatch):
    """Regression: the review item's key was `ruleset:case.id`, so another agent's case (or the same
    agent's other case) with the same `id` got the first one's pending item, and its own escalation
    was never seen. Only the same request again (agent, type, payload, as_of, id) shares an item."""
    if separate:
        monkeypatch.setenv("RULEBRIDGE_AUDIT_URL", f"sqlite:///{tmp_path}/audit.db")
    e = engine(None, state=db, now=clock)
    assert e.one_database is not separate
    a = e.decide(invoice(10006, "ap-assistant"), llm=False)
    b = e.decide(invoice(10008, "ops-console"), llm=False)  # another agent, the same id
    c = e.decide(invoice(10009, "ap-assistant"), llm=False)  # the same agent and id, another payload
    assert [d.outcome for d in (a, b, c)] == ["escalate"] * 3
    assert len({a.review_id, b.review_id, c.review_id}) == 3
    pending = {i.id: i for i in e.review_list()}
    assert set(pending) == {a.review_id, b.review_id, c.review_id}
    assert [(pending[d.review_id].agent, pending[d.review_id].decision_id) for d in (a, b, c)] == [
        ("ap-assistant", a.id), ("ops-console", b.id), ("ap-assistant", c.id)]
    for d in (a, b, c):  # each decision's trail names its own item
        assert [ev.data["review_id"] for ev in e.audit.trace(d.id) if ev.step == "decided"] == [d.review_id]
    # the same request again waits in the same item (that dedup is intended)
    assert e.decide(invoice(10006, "ap-assistant"), llm=False).review_id == a.review_id
    assert e.decide(invoice(10006, "ops-console"), llm=False).review_id not in (a.review_id, b.review_id)
    assert e.decide(invoice(10006, "ap-assistant", as_of="2026-11-02"), llm=False).review_id != a.review_id
    assert len(e.review_list()) == 5


# -- approve ----------------------------------------------------------------------------------------

def test_approve_the_waiting_proposal(db, clock):
    e, d = over_limit(db, clock)
    clock.advance(minutes=5)
    item = e.review_approve(d.review_id, reviewer="sales-ops-lead", note="long-standing customer")
    assert item.status == "approved"
    assert item.reviewer == "sales-ops-lead" and item.note == "long-standing customer"
    assert item.decided_at == T0 + dt.timedelta(minutes=5)
    assert item.approved["action"] == "approve_discount" and item.approved["source"] == "human"
    assert item.approved["params"] == {"order": BWD + "SO-3005", "percent": 25.0}
    assert item.approved_hash == item.proposal_hash
    assert e.review_list() == [] and [i.id for i in e.review_list("approved")] == [d.review_id]


def test_approval_is_bound_to_the_hash_the_reviewer_saw(db, clock):
    e, d = over_limit(db, clock)
    h = e.review_show(d.review_id).proposal_hash
    with pytest.raises(ReviewError) as info:
        e.review_approve(d.review_id, reviewer="sales-ops-lead", expect_hash="0" * 12)
    assert info.value.code == "review_hash_mismatch"
    assert e.review_show(d.review_id).status == "pending"
    item = e.review_approve(d.review_id, reviewer="sales-ops-lead", expect_hash=h[:12])
    assert item.approved_hash == h


@pytest.mark.parametrize("given", ["", "   ", "abc", "PREFIX", "11-chars-xx"])
def test_an_empty_or_short_expected_hash_is_refused(db, clock, given):
    """Regression: `expect_hash=""` is falsy and silently skipped the check; a prefix shorter than
    12 hex characters binds to almost nothing. Both are refused, and the item stays pending."""
    e, d = over_limit(db, clock)
    h = e.review_show(d.review_id).proposal_hash
    for short in (given, h[:11]):
        with pytest.raises(ReviewError) as info:
            e.review_approve(d.review_id, reviewer="sales-ops-lead", expect_hash=short)
        assert info.value.code == "review_hash_too_short", short
        assert "at least 12 hex characters" in str(info.value)
    assert e.review_show(d.review_id).status == "pending"
    with pytest.raises(ReviewError) as info:  # 12 characters that are not hex match no proposal
        e.review_approve(d.review_id, reviewer="sales-ops-lead", expect_hash="z" * 12)
    assert info.value.code == "review_hash_mismatch"
    item = e.review_approve(d.review_id, reviewer="sales-ops-lead", expect_hash=f" {h[:12].upper()} ")
    assert item.approved_hash == h


def test_an_expected_hash_without_a_waiting_proposal_is_refused(db, clock):
    """An item with no proposal has no hash to bind to: `--hash` is not silently ignored."""
    e = engine(None, state=db, now=clock)
    d = e.decide(discount_case(), llm=False)  # no rule decides: waits without a proposal
    assert d.outcome == "escalate" and e.review_show(d.review_id).proposal_hash is None
    with pytest.raises(ReviewError) as info:
        e.review_approve(d.review_id, reviewer="sales-ops-lead", expect_hash="0" * 12,
                         action="approve_discount", params={"order": "bwd:SO-3002", "percent": 4})
    assert info.value.code == "review_hash_mismatch" and "no proposal" in str(info.value)


def test_approval_needs_a_reviewer(db, clock):
    e, d = over_limit(db, clock)
    with pytest.raises(ReviewError) as info:
        e.review_approve(d.review_id, reviewer="  ")
    assert info.value.code == "review_incomplete"
    assert e.review_show(d.review_id).status == "pending"


def test_approval_the_deny_guards_refuse_is_refused(eng):
    d = no_proposal(eng)
    # 20 % on SO-3002 takes the margin below the floor: no reviewer can approve that
    with pytest.raises(ReviewError) as info:
        eng.review_approve(d.review_id, reviewer="sales-ops-lead", action="approve_discount",
                           params={"order": "bwd:SO-3002", "percent": 20})
    assert info.value.code == "review_denied"
    assert "crm.guard.margin_floor" in str(info.value)
    assert eng.review_show(d.review_id).status == "pending"


@pytest.mark.parametrize("action, params, why", [
    ("approve_discount", {"order": "bwd:SO-3219", "percent": 3}, "only draft or confirmed orders"),
    ("approve_discount", {"order": "bwd:SO-3174", "percent": 1}, "but this case is about `bwd:SO-3002`"),
    ("approve_discount", {"order": "bwd:SO-3002", "percent": "3"}, "percent"),
    ("hold_invoice", {"invoice": "bwd:INV-10001", "reason": "x"}, "sales-assistant"),
    ("wire_money", {}, "wire_money"),
])
def test_approval_of_a_proposal_the_gate_denies_is_refused(eng, action, params, why):
    d = no_proposal(eng)
    with pytest.raises(ReviewError) as info:
        eng.review_approve(d.review_id, reviewer="sales-ops-lead", action=action, params=params)
    assert info.value.code == "review_denied" and why in str(info.value)
    assert eng.review_show(d.review_id).status == "pending"


def test_approval_of_an_item_without_proposal_needs_an_action(eng):
    d = no_proposal(eng)
    assert eng.review_show(d.review_id).proposal is None
    with pytest.raises(ReviewError) as info:
        eng.review_approve(d.review_id, reviewer="sales-ops-lead")
    assert info.value.code == "review_needs_action"
    item = eng.review_approve(d.review_id, reviewer="sales-ops-lead", action="approve_discount",
                              params={"order": "bwd:SO-3002", "percent": 7})
    assert item.status == "approved"
    assert item.approved["params"] == {"order": BWD + "SO-3002", "percent": 7.0}
    assert item.approved_hash == proposal_hash("approve_discount", {"order": BWD + "SO-3002", "percent": 7.0})


def test_reviewer_settles_review_reasons(db, clock):
    """Regression: re-verifying an approval whose only reasons were `review` ones (here the agent's
    limit) crashed with AttributeError, because a `Review` verdict carried no normalised proposal."""
    e, d = over_limit(db, clock)
    assert e.review_approve(d.review_id, reviewer="sales-ops-lead").status == "approved"


# -- reject, double decisions -----------------------------------------------------------------------

def test_reject_needs_a_reason_and_a_reviewer(eng):
    d = no_proposal(eng)
    for reviewer, reason in (("sales-ops-lead", ""), ("sales-ops-lead", "   "), ("", "too much")):
        with pytest.raises(ReviewError) as info:
            eng.review_reject(d.review_id, reviewer=reviewer, reason=reason)
        assert info.value.code == "review_incomplete"
    assert eng.review_show(d.review_id).status == "pending"
    item = eng.review_reject(d.review_id, reviewer="sales-ops-lead", reason="margin matters more")
    assert (item.status, item.reviewer, item.note) == ("rejected", "sales-ops-lead", "margin matters more")


def test_approve_twice_is_refused(db, clock):
    e, d = over_limit(db, clock)
    e.review_approve(d.review_id, reviewer="sales-ops-lead")
    with pytest.raises(ReviewError) as info:
        e.review_approve(d.review_id, reviewer="controller")
    assert info.value.code == "review_not_pending"
    assert e.review_show(d.review_id).reviewer == "sales-ops-lead"


def test_approve_after_reject_is_refused(db, clock):
    e, d = over_limit(db, clock)
    e.review_reject(d.review_id, reviewer="sales-ops-lead", reason="no")
    with pytest.raises(ReviewError) as info:
        e.review_approve(d.review_id, reviewer="controller")
    assert info.value.code == "review_not_pending"
    assert e.review_show(d.review_id).status == "rejected"


def test_reject_after_approve_is_refused(db, clock):
    e, d = over_limit(db, clock)
    e.review_approve(d.review_id, reviewer="sales-ops-lead")
    with pytest.raises(ReviewError) as info:
        e.review_reject(d.review_id, reviewer="controller", reason="changed my mind")
    assert info.value.code == "review_not_pending"
    assert e.review_show(d.review_id).status == "approved"


def test_unknown_item(eng):
    for op in (lambda: eng.review_show("R-nope"), lambda: eng.review_approve("R-nope", reviewer="sales-ops-lead"),
               lambda: eng.review_reject("R-nope", reviewer="sales-ops-lead", reason="x")):
        with pytest.raises(ReviewError) as info:
            op()
        assert info.value.code == "review_not_found"


# -- expiry -----------------------------------------------------------------------------------------

def test_pending_item_expires_as_denied(db, clock):
    e, d = over_limit(db, clock)
    clock.advance(hours=71, minutes=59)
    assert e.review_show(d.review_id).status == "pending"
    clock.advance(minutes=1)
    item = e.review_show(d.review_id)
    assert item.status == "expired" and item.decided_at == T0 + dt.timedelta(hours=72)
    assert e.review_list() == []
    assert e.queue.counts()["expired"] == 1 and e.queue.counts()["pending"] == 0
    with pytest.raises(ReviewError) as info:
        e.review_approve(d.review_id, reviewer="sales-ops-lead")
    assert info.value.code == "review_not_pending"
    assert e.queue.consume(d.review_id, item.proposal_hash) is False  # nothing to apply, ever


def test_an_expiry_is_on_the_record_of_its_decision_once(db, clock):
    """An item nobody decided in time is denied in the audit trail too (not `waiting for a person`)."""
    from engine.audit.trail import who_decided

    e, d = over_limit(db, clock)
    clock.advance(hours=73)
    e.review_list()
    e.review_show(d.review_id)  # a second sweep finds nothing new to record
    trace = e.audit.trace(d.id)
    assert [(ev.step, ev.agent) for ev in trace][-2:] == [("reviewed", "expiry"), ("decided", "expiry")]
    assert sum(ev.step == "reviewed" for ev in trace) == 1
    w = who_decided(trace)
    assert (w["by"], w["outcome"], w["reason"]) == ("none", "deny", "review_expired")
    assert e.audit.verify().ok


def test_expiry_is_enforced_at_decision_time_even_without_a_sweep(db, clock):
    """The conditional UPDATE itself refuses an item past its deadline, whatever `expire()` did."""
    q = ReviewQueue(db, expire_after=dt.timedelta(hours=1), clock=clock)
    item = q.enqueue(case_key="k", decision_id="d", ruleset="r", case_type="t", agent="a", reason="limit",
                     message="m", proposal={"action": "x", "params": {}}, proposal_hash="h", context={})
    clock.advance(hours=2)
    with pytest.raises(ReviewError) as info:
        q.approve(item.id, reviewer="sales-ops-lead", proposal={"action": "x", "params": {}}, proposal_hash="h")
    assert info.value.code == "review_not_pending"
    assert q.get(item.id).status == "expired"


def test_an_expired_case_can_be_enqueued_again(db, clock):
    eng = engine(None, state=db, now=clock)
    first = no_proposal(eng)
    clock.advance(hours=73)
    eng.queue.expire()
    again = no_proposal(eng)
    assert again.review_id != first.review_id


# -- consume ----------------------------------------------------------------------------------------

def test_an_approval_is_consumed_exactly_once(db, clock):
    e, d = over_limit(db, clock)
    item = e.review_approve(d.review_id, reviewer="sales-ops-lead")
    assert e.queue.consume(d.review_id, "f" * 64) is False  # another proposal: not this approval
    assert e.queue.consume(d.review_id, item.approved_hash) is True
    assert e.queue.consume(d.review_id, item.approved_hash) is False
    after = e.review_show(d.review_id)
    assert after.status == "applied" and after.applied_at == T0


def test_a_pending_or_rejected_item_cannot_be_consumed(db, clock):
    e, d = over_limit(db, clock)
    h = e.review_show(d.review_id).proposal_hash
    assert e.queue.consume(d.review_id, h) is False
    e.review_reject(d.review_id, reviewer="sales-ops-lead", reason="no")
    assert e.queue.consume(d.review_id, h) is False


def test_concurrent_consumers_apply_once(db, clock):
    e, d = over_limit(db, clock)
    h = e.review_approve(d.review_id, reviewer="sales-ops-lead").approved_hash
    results = race(8, lambda: e.queue.consume(d.review_id, h))
    assert sorted(results) == [False] * 7 + [True]


# -- races ------------------------------------------------------------------------------------------

def race(n: int, fn):
    """Run `fn` in `n` threads released together; returns each result or raised exception."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i):
        barrier.wait()
        try:
            out[i] = fn()
        except Exception as exc:  # noqa: BLE001 — collected and checked by the caller
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_two_reviewers_racing_to_approve_exactly_one_wins(db, clock):
    e, d = over_limit(db, clock)
    names = iter(["sales-ops-lead", "controller"])
    lock = threading.Lock()

    def approve():
        with lock:
            name = next(names)
        return e.review_approve(d.review_id, reviewer=name)

    results = race(2, approve)
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], ReviewError) and lost[0].code == "review_not_pending"
    item = e.review_show(d.review_id)
    assert item.status == "approved" and item.reviewer == won[0].reviewer


def test_many_threads_racing_on_the_queue_one_wins(db, clock):
    q = ReviewQueue(db, clock=clock)
    item = q.enqueue(case_key="k", decision_id="d", ruleset="r", case_type="t", agent="a", reason="limit",
                     message="m", proposal=None, proposal_hash=None, context={})
    counter = iter(range(100))
    lock = threading.Lock()

    def decide():
        with lock:
            i = next(counter)
        if i % 2:
            return q.reject(item.id, reviewer=f"r{i}", reason="no")
        return q.approve(item.id, reviewer=f"r{i}", proposal={"action": "x", "params": {}}, proposal_hash="h")

    results = race(10, decide)
    won = [r for r in results if not isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(isinstance(r, ReviewError) and r.code == "review_not_pending" for r in results if r not in won)
    assert q.get(item.id).status == won[0].status


def test_racing_enqueues_of_the_same_case_keep_one_pending_item(db, clock):
    """Regression: `enqueue` read, then inserted; concurrent enqueues of one case all inserted."""
    q = ReviewQueue(db, clock=clock)

    def enqueue():
        return q.enqueue(case_key="same", decision_id="d", ruleset="r", case_type="t", agent="a", reason="x",
                         message="m", proposal=None, proposal_hash=None, context={}).id

    results = race(6, enqueue)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(list(q.list("pending"))) == 1
