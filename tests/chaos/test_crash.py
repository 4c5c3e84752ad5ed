"""Crash injection: real child processes killed with SIGKILL mid-chain; recovery loses nothing and
doubles nothing.

Each run starts `child.py` (a fresh interpreter) on its own ledger and systems of record, which
runs one seed's decisions (`scenario.decisions`) and is killed at an injected point (the n-th
time it reaches it) or after a random delay. The parent then restarts as a new executor would:
`recover()`, then `run` again for every decision of the run, and checks that every chain ended as
allowed (lost = 0), that no key took effect twice in a system of record (doubled = 0), and that
the ledger agrees with the systems of record (inconsistent = 0).

    RULEBRIDGE_CRASH_RUNS=1000 python -m pytest -q tests/chaos     # more runs (default 120)
    RULEBRIDGE_CRASH_SEED=7                                        # another series of seeds
    RULEBRIDGE_CRASH_WORKERS=1                                     # runs in parallel (default 2)

A few runs keep the ledger on PostgreSQL when RULEBRIDGE_TEST_PG_URL is set. When the audit log
(`engine.audit.log`) exists, the child and the recovery append every state change to it and the
parent verifies its hash chain after each run.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.act.execute import Executor
from engine.act.ledger import Ledger
from tests.chaos.scenario import AGENT, KILL_POINTS, check, decisions, records
from tests.conftest import PG_URL, _pg_schema_url

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("RULEBRIDGE_CRASH_RUNS", "120"))
PG_RUNS = int(os.environ.get("RULEBRIDGE_CRASH_PG_RUNS", str(len(KILL_POINTS))))
BASE_SEED = int(os.environ.get("RULEBRIDGE_CRASH_SEED", "20261101"))
WORKERS = int(os.environ.get("RULEBRIDGE_CRASH_WORKERS", str(min(2, os.cpu_count() or 1))))
TIMED_WINDOW = 0.12  # seconds after `ready` in which a timed kill lands (a child's work takes about this long)
CHILD_TIMEOUT = 60


def _audit_log_class() -> Any:
    """`engine.audit.log.AuditLog` if the audit log exists yet, else None."""
    try:
        from engine.audit.log import AuditLog
    except ModuleNotFoundError as exc:
        if exc.name in ("engine.audit", "engine.audit.log"):
            return None
        raise
    return AuditLog


AUDIT_LOG = _audit_log_class()


@dataclass
class Tally:
    """The counts of a series of runs."""

    runs: int = 0
    killed: Counter[str] = field(default_factory=Counter)  # kill point → runs that died there
    survived: int = 0  # runs whose kill point was not reached (or the timed kill came too late)
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    audit_broken: list[str] = field(default_factory=list)  # the hash chain does not verify
    audit_gaps: list[str] = field(default_factory=list)  # a final state with no audit event
    audit_events: int = 0
    audit_replayed: int = 0  # events recovery appended for a dead process
    reconciled: int = 0  # executions recovery confirmed done
    retried: int = 0  # executions recovery found not done (run again by the re-run)
    needs_review: int = 0  # decisions left to a person (allowed ones only)
    recovered_chains: int = 0  # chains recovery finished itself (recorded done, or compensated)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self, label: str, seconds: float) -> str:
        kills = " ".join(f"{p}={self.killed[p]}" for p in KILL_POINTS if self.killed[p])
        audit = (f"audit_events={self.audit_events} audit_replayed={self.audit_replayed} "
                 f"audit_broken={len(self.audit_broken)} audit_gaps={len(self.audit_gaps)}" if AUDIT_LOG
                 else "audit=absent")
        return (f"crash suite [{label}]: runs={self.runs} killed={sum(self.killed.values())} ({kills}) "
                f"survived={self.survived} lost={len(self.lost)} doubled={len(self.doubled)} "
                f"inconsistent={len(self.inconsistent)} reconciled={self.reconciled} retried={self.retried} "
                f"recovered_chains={self.recovered_chains} needs_review={self.needs_review} {audit} "
                f"seed={BASE_SEED} workers={WORKERS} in {seconds:.1f}s")

    def assert_clean(self) -> None:
        assert not self.lost, f"lost executions: {self.lost[:10]}"
        assert not self.doubled, f"doubled executions: {self.doubled[:10]}"
        assert not self.inconsistent, f"ledger inconsistent: {self.inconsistent[:10]}"
        assert not self.audit_broken, f"audit chain broken: {self.audit_broken[:10]}"
        assert not self.audit_gaps, f"states missing from the audit log: {self.audit_gaps[:10]}"
        assert self.audit_events > 0 or not AUDIT_LOG


def one_run(seed: int, folder: Path, ledger_url: str, tally: Tally, *, one_db: bool = False) -> None:
    """Start the child, kill it, recover, re-run, check. `one_db`: the audit log lives in the ledger's
    database and the executor writes through its units of work (as `Engine` does by default)."""
    rng = random.Random(seed)
    point = KILL_POINTS[seed % len(KILL_POINTS)]
    # the n-th time the point is reached; points a run reaches only once or twice get a small n
    nth = rng.randint(1, 2 if point.startswith(("blind", "compensation")) else 4)
    folder.mkdir(parents=True)
    Ledger(ledger_url).close()  # the tables exist before the child starts (as in a deployed workspace)
    records(folder)
    audit_url = (ledger_url if one_db else f"sqlite:///{folder}/audit.db") if AUDIT_LOG else ""
    env = {**os.environ, "RULEBRIDGE_CHAOS_SEED": str(seed), "RULEBRIDGE_CHAOS_DIR": str(folder),
           "RULEBRIDGE_CHAOS_LEDGER_URL": ledger_url, "RULEBRIDGE_CHAOS_AUDIT_URL": audit_url,
           "RULEBRIDGE_CHAOS_ONE_DB": "1" if one_db and AUDIT_LOG else "0",
           "RULEBRIDGE_CHAOS_KILL": f"{point}:{nth}" if point != "timed" else "none:0",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(CHILD)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        if point == "timed":
            ready = proc.stdout.readline() if proc.stdout else ""
            if ready.strip() == "ready":
                time.sleep(rng.uniform(0, TIMED_WINDOW))
                proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"child of seed {seed} failed (exit {proc.returncode}):\n{err[-3000:]}")

    # The restart: a fresh ledger, fresh connectors, recovery, then every decision again.
    audit_log = AUDIT_LOG(audit_url) if AUDIT_LOG else None
    audit: Callable[[str, str, dict[str, Any]], None] | None = None
    if audit_log is not None:
        audit = lambda d, step, data: audit_log.append(d, step, data.get("agent", AGENT), data)  # noqa: E731
    units = audit_log.database if one_db and audit_log is not None else None
    ledger = Ledger(units or ledger_url)  # one database: the ledger joins the audit log's units of work
    recs = records(folder)
    try:
        executor = Executor(ledger, recs, audit=audit, units=units)
        report = executor.recover()
        planned = decisions(seed)
        for p in planned:
            res = executor.run(p.decision_id, AGENT, p.steps)
            assert res.outcome not in ("in_progress", "pending"), (seed, p.decision_id, res)
        findings = check(ledger, recs, planned)
        verdict = audit_log.verify() if audit_log is not None else None
        gaps = audit_gaps(audit_log, ledger, planned) if audit_log is not None else []
    finally:
        ledger.close()
        close = getattr(audit_log, "close", None)
        if close:
            close()
    with tally.lock:
        tally.runs += 1
        if proc.returncode == -signal.SIGKILL:
            tally.killed[point] += 1
        else:
            tally.survived += 1
        tally.lost += [f"seed {seed} {point}:{nth}: {x}" for x in findings.lost]
        tally.doubled += [f"seed {seed} {point}:{nth}: {x}" for x in findings.doubled]
        tally.inconsistent += [f"seed {seed} {point}:{nth}: {x}" for x in findings.inconsistent]
        tally.needs_review += findings.needs_review
        tally.reconciled += len(report.reconciled_done)
        tally.retried += len(report.retryable)
        tally.recovered_chains += len(report.finished)
        if verdict is not None and not verdict.ok:
            tally.audit_broken.append(f"seed {seed}: {verdict}")
        tally.audit_gaps += [f"seed {seed} {point}:{nth}: {x}" for x in gaps]
        tally.audit_events += getattr(verdict, "checked", 0)
        tally.audit_replayed += report.audit_replayed


def audit_gaps(audit_log: Any, ledger: Ledger, planned: list[Any]) -> list[str]:
    """Final states of executions and chains that have no event in the audit log."""
    gaps = []
    for p in planned:
        events = audit_log.trace(p.decision_id)
        seen = {(e.data.get("key"), e.data.get("status")) for e in events}
        for r in ledger.executions(p.decision_id):
            if (r.key, r.status) not in seen:
                gaps.append(f"{p.decision_id} step {r.step} `{r.action}` {r.status}: no audit event")
        chain = ledger.chain(p.decision_id)
        if chain and not any(e.step == "chain_finished" and e.data.get("outcome") == chain.status for e in events):
            gaps.append(f"{p.decision_id} chain {chain.status}: no chain_finished event")
    return gaps


def series(runs: int, base: Path, url_for: Callable[[int, Path], str], *, workers: int,
           one_db: bool = False) -> Tally:
    tally = Tally()
    seeds = [BASE_SEED + i for i in range(runs)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fut in [pool.submit(lambda s: one_run(s, base / f"run-{s}", url_for(s, base / f"run-{s}"), tally,
                                                  one_db=one_db), s)
                    for s in seeds]:
            fut.result()
    return tally


def test_crash_recovery_sqlite(tmp_path, capsys):
    """Most runs: ledger and systems of record in SQLite files, killed at every point."""
    t0 = time.perf_counter()
    tally = series(RUNS, tmp_path, lambda s, folder: f"sqlite:///{folder}/ledger.db", workers=WORKERS)
    with capsys.disabled():
        print("\n" + tally.summary("sqlite", time.perf_counter() - t0))
    assert tally.runs == RUNS
    # every kill point was reached in some run (a point never reached would test nothing)
    assert set(tally.killed) == set(KILL_POINTS) or RUNS < 3 * len(KILL_POINTS), tally.killed
    assert (tally.reconciled > 0 and tally.retried > 0 and tally.recovered_chains > 0) or RUNS < 3 * len(KILL_POINTS)
    tally.assert_clean()


ONE_DB_RUNS = int(os.environ.get("RULEBRIDGE_CRASH_ONE_DB_RUNS", str(max(RUNS // 2, 1))))


@pytest.mark.skipif(AUDIT_LOG is None, reason="the audit log does not exist yet")
def test_crash_recovery_one_database(tmp_path, capsys):
    """Ledger and audit log in ONE SQLite file, the executor writing through the log's units of work
    (what `Engine` does by default): a state change and its event commit together, the claim before
    the connector acts; killed at every point, as above."""
    t0 = time.perf_counter()
    tally = series(ONE_DB_RUNS, tmp_path, lambda s, folder: f"sqlite:///{folder}/state.db", workers=WORKERS,
                   one_db=True)
    with capsys.disabled():
        print("\n" + tally.summary("sqlite, one database", time.perf_counter() - t0))
    assert tally.runs == ONE_DB_RUNS
    assert set(tally.killed) == set(KILL_POINTS) or ONE_DB_RUNS < 3 * len(KILL_POINTS), tally.killed
    tally.assert_clean()


@pytest.mark.parametrize("one_db", [False, True], ids=["ledger", "one_database"])
def test_crash_recovery_postgres(tmp_path, capsys, one_db):
    """A handful of runs with the ledger on PostgreSQL (the systems of record stay SQLite files);
    `one_database`: the audit log in the same schema, the executor writing through its units of work."""
    if one_db and AUDIT_LOG is None:
        pytest.skip("the audit log does not exist yet")
    if not PG_URL:
        if os.environ.get("RULEBRIDGE_REQUIRE_PG") == "1":
            pytest.fail("RULEBRIDGE_REQUIRE_PG=1 but RULEBRIDGE_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL: set RULEBRIDGE_TEST_PG_URL (see .ci/run)")
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL)
    schemas: list[str] = []

    def url_for(seed: int, folder: Path) -> str:
        schema = f"crash_{secrets.token_hex(6)}"
        with admin.begin() as c:
            c.execute(text(f"CREATE SCHEMA {schema}"))
        schemas.append(schema)
        return _pg_schema_url(PG_URL, schema)

    t0 = time.perf_counter()
    try:
        tally = series(PG_RUNS, tmp_path, url_for, workers=WORKERS, one_db=one_db)
    finally:
        with admin.begin() as c:
            for schema in schemas:
                c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    with capsys.disabled():
        print("\n" + tally.summary("postgresql, one database" if one_db else "postgresql", time.perf_counter() - t0))
    assert tally.runs == PG_RUNS
    tally.assert_clean()
