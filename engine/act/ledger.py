"""The execution ledger: what was started, what is done, so nothing is lost and nothing runs twice.

One row per execution (`executions`), keyed by an idempotency key derived from the decision, the
step's index and the exact action and parameters; one row per decision's chain of steps (`chains`)
with the verified plan, so a restart can finish a chain (compensation) without its caller.

Stored with SQLAlchemy Core: SQLite (WAL, busy timeout) in the workspace by default, PostgreSQL by
URL. Claiming an execution is one atomic INSERT (the primary key refuses a second one) or, for an
execution recovered as not done, one conditional UPDATE; every later state change is a conditional
UPDATE fenced by the status and the attempt number, so two processes cannot both win a step.

Execution states: started → done | failed | needs_review; done → compensating → compensated |
needs_review; failed with `retryable` (only set by recovery: the connector said the effect did
not happen) → started again, by the next claim.

Chain states: running → done | needs_review | compensating; compensating → failed_compensated |
failed_needs_review.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.canonical import digest, proposal_hash
from engine.errors import RulebridgeError
from engine.storage import Compiled as _Compiled
from engine.storage import Database, Store, ensure_tables
from engine.storage import row_reader as _row_reader
from engine.storage import utc as _utc

STATUSES = ("started", "done", "failed", "needs_review", "compensating", "compensated")
CHAIN_STATUSES = ("running", "done", "needs_review", "compensating", "failed_compensated", "failed_needs_review")
CHAIN_FINAL = frozenset({"done", "needs_review", "failed_compensated", "failed_needs_review"})

metadata = MetaData()
executions = Table(
    "executions", metadata,
    Column("key", String(64), primary_key=True),
    Column("decision_id", String(200), nullable=False, index=True),
    Column("chain_id", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    Column("action", String(200), nullable=False),
    Column("params", JSON, nullable=False),
    Column("connector", String(200), nullable=False),
    Column("compensates", String(64), nullable=True),  # the key of the execution this one undoes
    Column("status", String(16), nullable=False, index=True),
    Column("retryable", Boolean, nullable=False, default=False),
    Column("reconciled", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("agent", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("audited", String(16), nullable=True),  # the status whose audit event was appended last
)
# INVARIANT: one forward execution per step of a decision, and at most one compensation per
# execution — enforced by the database, whatever the keys say.
Index("executions_one_per_step", executions.c.decision_id, executions.c.step, unique=True,
      sqlite_where=executions.c.compensates.is_(None), postgresql_where=executions.c.compensates.is_(None))
Index("executions_one_compensation", executions.c.compensates, unique=True,
      sqlite_where=executions.c.compensates.isnot(None), postgresql_where=executions.c.compensates.isnot(None))

chains = Table(
    "chains", metadata,
    Column("decision_id", String(200), primary_key=True),  # INVARIANT: one chain per decision
    Column("chain_id", String(64), nullable=False, unique=True),
    Column("agent", String(200), nullable=False),
    Column("status", String(24), nullable=False, index=True),
    Column("plan", JSON, nullable=False),  # the verified steps with their inverses
    Column("plan_hash", String(64), nullable=False),
    Column("failed_step", Integer, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("audited", String(24), nullable=True),  # the status whose audit event was appended last
)


class LedgerError(RulebridgeError):
    """The ledger cannot record a state change; `code` is stable (ledger_unavailable, ...)."""

    code = "ledger_error"


def idempotency_key(decision_id: str, step: int, action: str, params: dict[str, Any], *,
                    compensation: bool = False) -> str:
    """The key of one execution: sha256 of the decision, the step index and the exact action and parameters.

    A compensation (the inverse of step `step`) gets a key of its own, so it is exactly-once too.
    """
    return digest({"decision_id": decision_id, "step": step, "proposal": proposal_hash(action, params),
                   "phase": "compensate" if compensation else "execute"})


@dataclass(frozen=True)
class ExecutionRecord:
    """One row of the ledger: one execution of one action under one key."""

    key: str
    decision_id: str
    chain_id: str
    step: int
    action: str
    params: dict[str, Any]
    connector: str
    compensates: str | None
    status: str
    retryable: bool
    reconciled: bool
    attempts: int
    result: Any
    error_code: str | None
    error_message: str | None
    agent: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    audited: str | None = None


@dataclass(frozen=True)
class ChainRecord:
    """One decision's chain: its verified plan and where it stands."""

    decision_id: str
    chain_id: str
    agent: str
    status: str
    plan: list[dict[str, Any]]
    plan_hash: str
    failed_step: int | None
    error_code: str | None
    error_message: str | None
    started_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    audited: str | None = None


@dataclass(frozen=True)
class Claim:
    """The answer to a claim: `won` — run it now (as attempt `record.attempts`); else the recorded state."""

    won: bool
    record: ExecutionRecord


def _as_stored(value: Any) -> Any:
    """A JSON column's value as reading it back gives it."""
    return json.loads(json.dumps(value))


def _execution(r: Any) -> ExecutionRecord:
    m = dict(r._mapping)
    m["started_at"], m["finished_at"] = _utc(m["started_at"]), _utc(m["finished_at"])
    return ExecutionRecord(**m)


def _chain(r: Any) -> ChainRecord:
    m = dict(r._mapping)
    for k in ("started_at", "updated_at", "finished_at"):
        m[k] = _utc(m[k])
    return ChainRecord(**m)


_EXEC_COLS = [c.name for c in executions.columns]
_CHAIN_COLS = [c.name for c in chains.columns]
assert _EXEC_COLS == list(ExecutionRecord.__dataclass_fields__), "ExecutionRecord follows the table's columns"
assert _CHAIN_COLS == list(ChainRecord.__dataclass_fields__), "ChainRecord follows the table's columns"
_EXEC_TIMES = tuple(_EXEC_COLS.index(k) for k in ("started_at", "finished_at"))
_CHAIN_TIMES = tuple(_CHAIN_COLS.index(k) for k in ("started_at", "updated_at", "finished_at"))

_CLAIM_COLS = ("key", "decision_id", "chain_id", "step", "action", "params", "connector", "compensates", "status",
               "retryable", "reconciled", "attempts", "agent", "started_at")
_OPEN_COLS = ("decision_id", "chain_id", "agent", "status", "plan", "plan_hash", "started_at", "updated_at")


def _in(col: Any, n: int) -> Any:
    return col.in_([bindparam(f"from_{i}") for i in range(n)])


class _Statements:
    """The ledger's hot statements, compiled once per dialect (the conditional moves: per shape, lazily)."""

    def __init__(self, dialect: Any):
        self.dialect = dialect
        x, ch = executions.c, chains.c
        self.read_execution = _row_reader(executions, dialect, ExecutionRecord, _EXEC_TIMES)
        self.read_chain = _row_reader(chains, dialect, ChainRecord, _CHAIN_TIMES)
        self.get = _Compiled(select(executions).where(x.key == bindparam("w_key")), dialect)
        self.by_decision = _Compiled(
            select(executions).where(x.decision_id == bindparam("w_decision_id"))
            .order_by(x.decision_id, x.step, x.compensates.isnot(None), x.key), dialect)
        self.chain = _Compiled(select(chains).where(ch.decision_id == bindparam("w_decision_id")), dialect)
        self.claim = _Compiled(insert(executions).values({k: bindparam(f"v_{k}") for k in _CLAIM_COLS}), dialect)
        self.reclaim = _Compiled(
            update(executions).where(x.key == bindparam("w_key"), x.status == "failed", x.retryable.is_(True),
                                     x.attempts == bindparam("w_attempts"))
            .values(status="started", retryable=False, attempts=bindparam("v_attempts"),
                    started_at=bindparam("v_started_at"), finished_at=None, error_code=None, error_message=None,
                    result=bindparam("v_result")), dialect)
        self.open_chain = _Compiled(insert(chains).values({k: bindparam(f"v_{k}") for k in _OPEN_COLS}), dialect)
        self.finish = _Compiled(
            update(executions).where(x.key == bindparam("w_key"), x.status == "started",
                                     x.attempts == bindparam("w_attempts"))
            .values({k: bindparam(f"v_{k}") for k in ("status", "finished_at", "result", "error_code",
                                                      "error_message", "retryable", "reconciled")}), dialect)
        self.mark_audited = _Compiled(
            update(executions).where(x.key == bindparam("w_key"), x.status == bindparam("w_status"))
            .values(audited=bindparam("v_audited")), dialect)
        self.mark_chain_audited = _Compiled(
            update(chains).where(ch.decision_id == bindparam("w_decision_id"), ch.status == bindparam("w_status"))
            .values(audited=bindparam("v_audited")), dialect)
        self._moves: dict[tuple[Any, ...], _Compiled] = {}

    def move(self, n_from: int, cols: tuple[str, ...]) -> _Compiled:
        return self._move(executions, "key", n_from, cols)

    def move_chain(self, n_from: int, cols: tuple[str, ...]) -> _Compiled:
        return self._move(chains, "decision_id", n_from, cols)

    def _move(self, table: Any, by: str, n_from: int, cols: tuple[str, ...]) -> _Compiled:
        """`UPDATE table SET cols WHERE by = :w_<by> AND status IN (n_from values)`, compiled once per shape."""
        shape = (table.name, n_from, cols)
        found = self._moves.get(shape)
        if found is None:
            found = self._moves[shape] = _Compiled(
                update(table).where(table.c[by] == bindparam(f"w_{by}"), _in(table.c.status, n_from))
                .values({k: bindparam(f"v_{k}") for k in cols}), self.dialect)
        return found

T = TypeVar("T")

# A locked SQLite file past its busy timeout or a dropped PostgreSQL connection: try again a few times.
# Every write below is safe to repeat: a claim that committed but was not acknowledged reads back as
# someone else's (the caller stops, recovery settles it); a repeated conditional UPDATE matches nothing
# and the caller reads the row back.
_retry = retry(retry=retry_if_exception_type(OperationalError), stop=stop_after_attempt(4),
               wait=wait_exponential(multiplier=0.05, max=1.0), reraise=True)


class Ledger(Store):
    """The execution ledger on one SQLAlchemy URL. Times are passed in (`now=`) by the executor.

    On a shared `engine.storage.Database`: while a unit of work of the database is open in the
    calling thread (`database.unit()`), every write joins its transaction — committed together
    with the audit events appended meanwhile, at the unit's `flush` — and reads join it while it
    is open. Outside a unit, each call is its own transaction."""

    def __init__(self, target: Database | str):
        self._open(target)
        self.url = self.database.url
        self._do(lambda: ensure_tables(metadata, self.db))
        self._q = _Statements(self.db.dialect)

    def _do(self, fn: Callable[[], T]) -> T:
        try:
            if self._unit() is not None:
                return fn()  # inside a shared transaction: no retry (the unit's begin retries)
            return _retry(fn)()
        except OperationalError as exc:
            raise LedgerError(f"the execution ledger is unavailable: {exc.orig}", code="ledger_unavailable") from exc

    def _read_chain(self, c: Any, decision_id: str) -> ChainRecord | None:
        r = self._q.chain.run(c, {"w_decision_id": decision_id}).first()
        return self._q.read_chain(r) if r is not None else None

    def _read(self, c: Any, key: str) -> ExecutionRecord | None:
        r = self._q.get.run(c, {"w_key": key}).first()
        return self._q.read_execution(r) if r is not None else None

    # -- chains ---------------------------------------------------------------------------------

    def open_chain(self, *, decision_id: str, chain_id: str, agent: str, plan: list[dict[str, Any]],
                   plan_hash: str, now: dt.datetime) -> ChainRecord:
        """Record a decision's chain as running, or return the chain already recorded for it."""
        return self.start_chain(decision_id=decision_id, chain_id=chain_id, agent=agent, plan=plan,
                                plan_hash=plan_hash, now=now)[0]

    def start_chain(self, *, decision_id: str, chain_id: str, agent: str, plan: list[dict[str, Any]],
                    plan_hash: str, now: dt.datetime) -> tuple[ChainRecord, bool]:
        """`open_chain`, and whether this call recorded the chain (True: a new chain, so no execution
        of the decision exists yet — executions are only claimed under a recorded chain)."""
        def go() -> tuple[ChainRecord, bool]:
            found: ChainRecord | None
            try:
                with self._tx() as c, self._savepoint(c):
                    self._q.open_chain.run(c, {
                        "v_decision_id": decision_id, "v_chain_id": chain_id, "v_agent": agent,
                        "v_status": "running", "v_plan": plan, "v_plan_hash": plan_hash, "v_started_at": now,
                        "v_updated_at": now})
                # the row as written, without reading it back (JSON as stored, times as read: with a zone)
                at = _utc(now)
                return ChainRecord(decision_id, chain_id, agent, "running", _as_stored(plan), plan_hash, None, None,
                                   None, at, at, None), True
            except IntegrityError:
                found = self.chain(decision_id)  # recorded before (a re-run, or another process): what is there
            if found is None:  # pragma: no cover - a chain row is never deleted
                raise LedgerError(f"chain of decision `{decision_id}` vanished", code="ledger_inconsistent")
            return found, False
        return self._do(go)

    def chain(self, decision_id: str) -> ChainRecord | None:
        """The chain of a decision, or None."""
        def go() -> ChainRecord | None:
            with self._rx() as c:
                return self._read_chain(c, decision_id)
        return self._do(go)

    def chains(self, *, statuses: Collection[str] | None = None,
               updated_before: dt.datetime | None = None) -> list[ChainRecord]:
        """Chains, oldest first, optionally by status and last change."""
        q = select(chains).order_by(chains.c.started_at, chains.c.decision_id)
        if statuses is not None:
            q = q.where(chains.c.status.in_(list(statuses)))
        if updated_before is not None:
            q = q.where(chains.c.updated_at <= updated_before)

        def go() -> list[ChainRecord]:
            with self._rx() as c:
                return [_chain(r) for r in c.execute(q)]
        return self._do(go)

    def move_chain(self, decision_id: str, *, from_: Collection[str], to: str, now: dt.datetime,
                   failed_step: int | None = None, error_code: str | None = None,
                   error_message: str | None = None) -> bool:
        """Conditionally move a chain from one of `from_` to `to`; False if it was not in `from_`."""
        assert to in CHAIN_STATUSES, to
        values: dict[str, Any] = {"status": to, "updated_at": now}
        if to in CHAIN_FINAL:
            values["finished_at"] = now
        if failed_step is not None:
            values["failed_step"] = failed_step
        if error_code is not None:
            values["error_code"], values["error_message"] = error_code, (error_message or "")[:4000]
        froms = list(from_)
        return self._move(self._q.move_chain(len(froms), tuple(values)), {"w_decision_id": decision_id}, values,
                          froms)

    # -- executions -----------------------------------------------------------------------------

    def claim(self, key: str, *, decision_id: str, chain_id: str, step: int, action: str,
              params: dict[str, Any], connector: str, agent: str, now: dt.datetime,
              compensates: str | None = None) -> Claim:
        """Claim the execution `key`: won (run it now) by exactly one caller; the others get the record.

        One INSERT (a new key), or one conditional UPDATE of an execution that recovery found not
        done (`failed` and `retryable`), which bumps `attempts` — the fence for the state changes.
        """
        def go() -> Claim:
            try:
                with self._tx() as c, self._savepoint(c):
                    self._q.claim.run(c, {
                        "v_key": key, "v_decision_id": decision_id, "v_chain_id": chain_id, "v_step": step,
                        "v_action": action, "v_params": params, "v_connector": connector,
                        "v_compensates": compensates, "v_status": "started", "v_retryable": False,
                        "v_reconciled": False, "v_attempts": 1, "v_agent": agent, "v_started_at": now})
                # the row as written, without reading it back (JSON as stored, times as read: with a zone)
                return Claim(True, ExecutionRecord(key, decision_id, chain_id, step, action, _as_stored(params),
                                                   connector,
                                                   compensates, "started", False, False, 1, None, None, None, agent,
                                                   _utc(now), None))
            except IntegrityError:
                pass
            found = self.get(key)
            if found is None:  # the key is new, but its step (or the step it undoes) has an execution
                raise LedgerError(f"decision `{decision_id}` already has another execution at step {step}"
                                  f"{' (compensation)' if compensates else ''}", code="step_conflict")
            rec = found
            if rec.status == "failed" and rec.retryable:
                with self._tx() as c:
                    res = self._q.reclaim.run(c, {"w_key": key, "w_attempts": rec.attempts,
                                                  "v_attempts": rec.attempts + 1, "v_started_at": now,
                                                  "v_result": None})
                    won_ = res.rowcount == 1
                    after = self._read(c, key)
                if after is None:  # pragma: no cover - an execution row is never deleted
                    raise LedgerError(f"execution `{key}` vanished", code="ledger_inconsistent")
                return Claim(won_, after)
            return Claim(False, rec)
        return self._do(go)

    def _get(self, key: str) -> ExecutionRecord:
        rec = self.get(key)
        if rec is None:  # pragma: no cover - an execution row is never deleted
            raise LedgerError(f"execution `{key}` vanished", code="ledger_inconsistent")
        return rec

    def get(self, key: str) -> ExecutionRecord | None:
        """The execution with `key`, or None."""
        def go() -> ExecutionRecord | None:
            with self._rx() as c:
                return self._read(c, key)
        return self._do(go)

    def finish(self, key: str, *, attempt: int, status: str, now: dt.datetime, result: Any = None,
               error_code: str | None = None, error_message: str | None = None, retryable: bool = False,
               reconciled: bool = False) -> bool:
        """Record the end of attempt `attempt` of a started execution; False if it is not (or no longer) ours."""
        assert status in ("done", "failed", "needs_review"), status
        args = {"w_key": key, "w_attempts": attempt, "v_status": status, "v_finished_at": now, "v_result": result,
                "v_error_code": error_code,
                "v_error_message": (error_message or "")[:4000] if error_code else None,
                "v_retryable": retryable, "v_reconciled": reconciled}

        def go() -> bool:
            with self._tx() as c:
                return self._q.finish.run(c, dict(args)).rowcount == 1
        return self._do(go)

    def move(self, key: str, *, from_: Collection[str], to: str, now: dt.datetime,
             error_code: str | None = None, error_message: str | None = None) -> bool:
        """Conditionally move a finished execution (done → compensating → compensated | needs_review)."""
        assert to in STATUSES and to != "started", to
        values: dict[str, Any] = {"status": to, "finished_at": now}
        if error_code is not None:
            values["error_code"], values["error_message"] = error_code, (error_message or "")[:4000]
        froms = list(from_)
        return self._move(self._q.move(len(froms), tuple(values)), {"w_key": key}, values, froms)

    def _move(self, stmt: _Compiled, where: dict[str, Any], values: dict[str, Any], froms: list[str]) -> bool:
        """Run a conditional move (`SET values WHERE <where> AND status IN froms`): True if it applied."""
        args = {**{f"v_{k}": v for k, v in values.items()}, **where,
                **{f"from_{i}": f for i, f in enumerate(froms)}}

        def go() -> bool:
            with self._tx() as c:
                return stmt.run(c, dict(args)).rowcount == 1
        return self._do(go)

    def started(self, *, before: dt.datetime | None = None) -> list[ExecutionRecord]:
        """Executions still `started` (in flight, or their process died), optionally started before a time."""
        q = select(executions).where(executions.c.status == "started").order_by(executions.c.started_at)
        if before is not None:
            q = q.where(executions.c.started_at <= before)

        def go() -> list[ExecutionRecord]:
            with self._rx() as c:
                return [_execution(r) for r in c.execute(q)]
        return self._do(go)

    # -- the audit outbox -------------------------------------------------------------------------
    # The audit log is another store: a process can die between a state change here and its audit
    # event. Each row remembers the status it was last audited in; recovery appends what is missing.

    def mark_audited(self, key: str, status: str) -> None:
        """Note that the event of `status` is in the audit log (if the execution is still in it)."""
        def go() -> None:
            with self._tx() as c:
                self._q.mark_audited.run(c, {"w_key": key, "w_status": status, "v_audited": status})
        self._do(go)

    def mark_chain_audited(self, decision_id: str, status: str) -> None:
        """Note that the chain's final event is in the audit log."""
        def go() -> None:
            with self._tx() as c:
                self._q.mark_chain_audited.run(c, {"w_decision_id": decision_id, "w_status": status,
                                                   "v_audited": status})
        self._do(go)

    def unaudited(self) -> tuple[list[ExecutionRecord], list[ChainRecord]]:
        """Finished executions and final chains whose current status has no audit event yet."""
        rows = select(executions).where(executions.c.status.notin_(("started", "compensating")),
                                        or_(executions.c.audited.is_(None), executions.c.audited != executions.c.status)
                                        ).order_by(executions.c.finished_at, executions.c.key)
        done = select(chains).where(chains.c.status.in_(list(CHAIN_FINAL)),
                                    or_(chains.c.audited.is_(None), chains.c.audited != chains.c.status)
                                    ).order_by(chains.c.updated_at, chains.c.decision_id)

        def go() -> tuple[list[ExecutionRecord], list[ChainRecord]]:
            with self._rx() as c:
                return [_execution(r) for r in c.execute(rows)], [_chain(r) for r in c.execute(done)]
        return self._do(go)

    def executions(self, decision_id: str | None = None) -> list[ExecutionRecord]:
        """All executions (of one decision), in step order, each forward execution before its compensation."""
        if decision_id is not None:
            def one() -> list[ExecutionRecord]:
                with self._rx() as c:
                    read = self._q.read_execution
                    return [read(r) for r in self._q.by_decision.run(c, {"w_decision_id": decision_id})]
            return self._do(one)
        q = select(executions).order_by(executions.c.decision_id, executions.c.step,
                                        executions.c.compensates.isnot(None), executions.c.key)

        def go() -> list[ExecutionRecord]:
            with self._rx() as c:
                return [_execution(r) for r in c.execute(q)]
        return self._do(go)


__all__ = ["CHAIN_FINAL", "CHAIN_STATUSES", "ChainRecord", "Claim", "ExecutionRecord", "Ledger", "LedgerError",
           "STATUSES", "idempotency_key"]
