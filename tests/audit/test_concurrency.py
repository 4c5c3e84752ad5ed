"""Concurrent writers — threads and separate OS processes — extend ONE valid chain: no fork, no
duplicate or missing seq, every event present exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import threading
import time

from sqlalchemy import func, select

from engine.audit.log import audit_events
from tests.audit.helpers import KEY
from tests.audit.workers import append_worker


def assert_one_chain(log, expected: dict[tuple[str, int], int]) -> None:
    """The log is one valid gapless chain holding exactly the expected events."""
    report = log.verify()
    assert report.ok, report
    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    seen = collections.Counter((e.data["writer"], e.data["round"], e.data["i"]) for e in events)
    want = collections.Counter({(w, r, i): 1 for (w, r), n in expected.items() for i in range(n)})
    assert seen == want
    # an append_many is contiguous: no other writer's event got into its transaction
    by_batch = collections.defaultdict(list)
    for e in events:
        if not e.decision_id.endswith("-single"):
            by_batch[e.decision_id].append(e.seq)
    assert all(seqs == list(range(seqs[0], seqs[0] + len(seqs))) for seqs in by_batch.values())
    # the writers really ran at the same time (else this test would prove nothing)
    writers = [e.agent for e in events]
    switches = sum(a != b for a, b in itertools.pairwise(writers))
    assert switches > len({w for w, _r in expected}), f"the writers did not interleave: {switches} switches"
    with log.db.connect() as c:
        assert c.execute(select(func.count(func.distinct(audit_events.c.seq)))).scalar() == len(events)


def test_threads_append_one_chain(make_log):
    logs = [make_log(hmac_key=KEY) for _ in range(2)]  # two engines (pools), as two API workers would have
    writers, rounds, per = 6, 15, 3
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            barrier.wait(timeout=30)
            for r in range(rounds):
                time.sleep(0.0005)  # let the other threads in: the GIL would otherwise serialise whole runs
                if r % 2:
                    logs[w % 2].append_many([(f"t{w}-{r}", "step", f"t{w}", {"writer": f"t{w}", "round": r, "i": i})
                                             for i in range(per)])
                else:
                    for i in range(per):
                        logs[w % 2].append(f"t{w}-{r}-single", "step", f"t{w}",
                                           {"writer": f"t{w}", "round": r, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    expected = {(f"t{w}", r): per for w in range(writers) for r in range(rounds)}
    assert_one_chain(logs[0], expected)
    assert logs[0].head().count == writers * rounds * per


def test_processes_append_one_chain(sql_url, make_log):
    log = make_log(hmac_key=KEY)  # the tables exist before the writers start, as in a deployment
    log.append("setup", "step", "setup", {"writer": "setup", "round": 0, "i": 0})
    ctx = multiprocessing.get_context("spawn")
    procs_n, rounds, per = 3, 150, 4  # long enough to overlap even on a loaded machine
    start = ctx.Barrier(procs_n + 1)
    procs = [ctx.Process(target=append_worker, args=(sql_url, f"p{w}", rounds, per, start, KEY))
             for w in range(procs_n)]
    for p in procs:
        p.start()
    # and this process writes at the same time, through its own connections
    start.wait(timeout=60)
    for r in range(rounds):
        log.append_many([(f"main-{r}", "step", "main", {"writer": "main", "round": r, "i": i}) for i in range(2)])
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * procs_n
    expected = {("setup", 0): 1, **{("main", r): 2 for r in range(rounds)},
                **{(f"p{w}", r): per for w in range(procs_n) for r in range(rounds)}}
    assert_one_chain(log, expected)
