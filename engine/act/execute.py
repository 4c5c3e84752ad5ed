"""Exactly-once execution of a verified chain of actions, with compensation and crash recovery.

`Executor.run` takes a decision's chain of steps, which the caller has verified as a whole, and
performs each step once through its connector, under an idempotency key recorded in the ledger
(`engine.act.ledger`). A step the ledger has as done is never run again: calling `run` twice for
one decision executes each step once. When a step fails, the completed steps are undone in reverse
order by their inverse steps, each itself an execution with its own key; a completed step without
an inverse, a compensation that fails, or an effect nobody can confirm leaves the chain for a
person (`needs_review`) — never a guess.

`Executor.recover` settles what a dead process left behind: it asks the connector about every
execution still `started` and finishes interrupted chains that only need recording or undoing.

Every state change is reported to `audit(decision_id, event, data)` after the ledger has it, and
noted in the ledger once appended; `recover` appends the events a dead process still owed (marked
`replayed`), so the latest state of every execution and chain is in the audit log at least once.
Events: execution_started, execution_done, execution_failed, compensation_started, compensated,
compensation_failed, reconciled, needs_review, chain_finished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.act.connectors.base import Connector, PermanentError, TransientError
from engine.act.connectors.resilience import CIRCUIT_OPEN
from engine.act.ledger import CHAIN_FINAL, ChainRecord, ExecutionRecord, Ledger, idempotency_key
from engine.canonical import digest
from engine.errors import RulebridgeError
from engine.storage import utc as _utc

Audit = Callable[[str, str, dict[str, Any]], None]
Outcome = Literal["done", "failed_compensated", "failed_needs_review", "needs_review", "in_progress", "pending"]

# The audit events, one per state change.
EXECUTION_STARTED = "execution_started"
EXECUTION_DONE = "execution_done"
EXECUTION_FAILED = "execution_failed"
COMPENSATION_STARTED = "compensation_started"
COMPENSATED = "compensated"
COMPENSATION_FAILED = "compensation_failed"
RECONCILED = "reconciled"
NEEDS_REVIEW = "needs_review"
CHAIN_FINISHED = "chain_finished"


class ExecutionError(RulebridgeError):
    """A chain the executor refuses to run; `code` is stable (empty_chain, unknown_connector, ...)."""

    code = "execution_error"


@dataclass(frozen=True)
class Step:
    """One action of a chain on one connector, with the step that undoes it (None: it cannot be undone)."""

    action: str
    params: dict[str, Any]
    connector: str
    inverse: Step | None = None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "params": self.params, "connector": self.connector,
                "inverse": self.inverse.to_json() if self.inverse else None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Step:
        inv = d.get("inverse")
        return cls(d["action"], dict(d["params"]), d["connector"], cls.from_json(inv) if inv else None)


@dataclass(frozen=True)
class StepResult:
    """Where one step of a chain stands: its execution and, if undone, its compensation."""

    index: int
    action: str
    key: str
    status: str | None  # the ledger status; None: never started
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None
    compensation: str | None = None  # the compensation's ledger status, if any


@dataclass(frozen=True)
class ChainResult:
    """The outcome of a chain: `done`, `failed_compensated` (nothing of it remains in effect),
    `failed_needs_review`, `needs_review`, or — not recorded — `in_progress` (another process holds
    a step) and `pending` (recovery left a step to the next `run`)."""

    decision_id: str
    chain_id: str
    outcome: Outcome
    steps: list[StepResult]
    executed: list[str] = field(default_factory=list)  # the keys this call ran through a connector
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class RecoveryReport:
    """What `recover` found and did."""

    reconciled_done: list[str] = field(default_factory=list)  # keys the connector confirmed as done
    retryable: list[str] = field(default_factory=list)  # keys confirmed not done: the next `run` executes them
    needs_review: list[str] = field(default_factory=list)  # keys nobody can confirm: a person decides
    finished: dict[str, str] = field(default_factory=dict)  # decision id → the outcome recovery recorded
    pending: list[str] = field(default_factory=list)  # decisions whose chain waits for the next `run`
    audit_replayed: int = 0  # audit events a dead process owed (appended now, marked `replayed`)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _as_stored(value: Any) -> Any:
    """A JSON column's value as reading it back gives it."""
    return None if value is None else json.loads(json.dumps(value))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def plan_of(steps: list[Step]) -> tuple[list[dict[str, Any]], str]:
    """The JSON form of a chain and its hash (what the ledger stores and compares)."""
    plan = _jsonable([s.to_json() for s in steps])
    return plan, digest(plan)


class Executor:
    """Runs verified chains exactly once against the connectors, recording every step in `ledger`."""

    def __init__(self, ledger: Ledger, connectors: Mapping[str, Connector], *, audit: Audit | None = None,
                 now: Callable[[], dt.datetime] = _utcnow, units: Any = None):
        self.ledger = ledger
        self.connectors = dict(connectors)
        self.audit = audit
        self.now = now
        # `units`: the ledger's `engine.storage.Database`, whose units of work hold a claim and its
        # audit event together (the audit log lives in the same database)
        # and `audit` appends into — the ledger and the log in one database. A run is then one unit:
        # the state changes and events between two connector calls commit together, and the unit is
        # flushed (committed) before every connector call.
        self.units = units

    # -- the public operations -------------------------------------------------------------------

    def run(self, decision_id: str, agent: str, steps: list[Step]) -> ChainResult:
        """Execute a decision's chain, each step exactly once; compensate the done steps if one fails.

        The caller has verified the WHOLE chain (schema, scope, guards, preconditions of every step
        and inverse) before calling: nothing here decides whether a step is allowed. Running the same
        decision again returns the recorded outcome and runs only what never ran (after a crash and
        `recover`). A chain that is empty, names an unknown connector, or differs from the chain
        already recorded for the decision is refused (`ExecutionError`) before anything runs.
        """
        self._check(steps)
        plan, plan_hash = plan_of(steps)
        chain_id = hashlib.sha256(f"{decision_id}\n{plan_hash}".encode()).hexdigest()[:32]
        with self.units.unit() if self.units is not None else nullcontext():
            chain, new = self.ledger.start_chain(decision_id=decision_id, chain_id=chain_id, agent=agent, plan=plan,
                                                 plan_hash=plan_hash, now=self.now())
            if chain.plan_hash != plan_hash:
                raise ExecutionError(f"decision `{decision_id}` already has a different chain of actions: "
                                     f"`{chain.chain_id}`", code="chain_mismatch")
            return self._drive(chain, [Step.from_json(p) for p in plan], execute=True, new=new)

    def recover(self, *, min_age: dt.timedelta = dt.timedelta(0)) -> RecoveryReport:
        """Settle what a dead process left: executions still `started`, chains not finished.

        For each execution started at least `min_age` ago the connector is asked: `done` → recorded
        done (`reconciled`); `not_done` → recorded failed and retryable, and the next `run` of the
        decision executes it; `unknown` (or no answer) → `needs_review`. A chain whose steps are all
        done is recorded done; a failed chain is compensated now; a chain mid-compensation is resumed.

        Audit events a dead process owed (a state change recorded, its event not yet appended) are
        appended now, marked `replayed`: every execution's and every chain's latest state is in the
        audit log at least once.

        Why not re-run a not-done step here: forward steps belong to the caller, who can verify the
        chain again before running it on (time has passed: a guard, a limit or the graph may say
        otherwise now); their decisions are listed in `pending`. Compensation was decided already
        and only restores the previous state, so it is finished here.

        INVARIANT: `min_age` must exceed the longest connector call whenever another process may be
        executing on this ledger; at 0 (a restart, nothing else running) an in-flight execution would
        be taken for a dead one.
        """
        report = RecoveryReport()
        cutoff = self.now() - min_age
        for rec in self.ledger.started(before=cutoff):
            self._reconcile(rec, report)
        for chain in self.ledger.chains(statuses=("running", "compensating"), updated_before=cutoff):
            steps = [Step.from_json(p) for p in chain.plan]
            res = self._drive(chain, steps, execute=False)
            if res.outcome == "pending":
                report.pending.append(chain.decision_id)
            elif res.outcome in CHAIN_FINAL:
                report.finished[chain.decision_id] = res.outcome
        if self.audit is not None:
            rows, finals = self.ledger.unaudited()
            for rec in rows:
                self._emit(rec.decision_id, self._event_of(rec), rec, replayed=True)
            for chain in finals:
                self._audit_chain(chain, replayed=True)
            report.audit_replayed = len(rows) + len(finals)
        return report

    # -- checks ----------------------------------------------------------------------------------

    def _check(self, steps: list[Step]) -> None:
        if not steps:
            raise ExecutionError("a chain needs at least one step", code="empty_chain")
        for i, top in enumerate(steps):
            for what, s in (("step", top), ("inverse of step", top.inverse)):
                if s is None:
                    continue
                if not s.connector:
                    raise ExecutionError(f"{what} {i} (`{s.action}`) names no connector", code="no_connector")
                if s.connector not in self.connectors:
                    known = ", ".join(f"`{k}`" for k in sorted(self.connectors)) or "none"
                    raise ExecutionError(f"{what} {i} (`{s.action}`) names an unknown connector `{s.connector}`: "
                                         f"known connectors: {known}", code="unknown_connector")
                self._ready(s.connector, f"{what} {i} (`{s.action}`)")
                if not isinstance(s.params, dict):
                    raise ExecutionError(f"{what} {i} (`{s.action}`): parameters must be an object",
                                         code="invalid_chain")
            if top.inverse is not None and top.inverse.inverse is not None:
                raise ExecutionError(f"the inverse of step {i} (`{top.action}`) has an inverse itself",
                                     code="invalid_chain")

    def _ready(self, name: str, what: str) -> None:
        """A connector the chain needs, imported now if it is loaded on first use: one that cannot
        be refuses the chain before anything runs."""
        from engine.act.connectors.registry import ConnectorConfigError

        ready = getattr(self.connectors[name], "ready", None)
        if callable(ready):
            try:
                ready()
            except ConnectorConfigError as exc:
                raise ExecutionError(f"{what}: connector `{name}` cannot be loaded: {exc}",
                                     code="connector_config") from exc

    # -- driving a chain -------------------------------------------------------------------------

    def _key(self, chain: ChainRecord, i: int, step: Step, *, compensation: bool = False) -> str:
        return idempotency_key(chain.decision_id, i, step.action, step.params, compensation=compensation)

    def _drive(self, chain: ChainRecord, steps: list[Step], *, execute: bool, new: bool = False) -> ChainResult:
        """Take a chain as far as it goes; `execute=False` (recovery) runs no forward step. `new`: the
        chain was recorded just now, so none of its steps has an execution to look up (the claim's
        primary key still refuses a second one)."""
        executed: list[str] = []
        if chain.status == "compensating":
            return self._compensate(chain, steps, executed)
        if chain.status in CHAIN_FINAL:
            return self._result(chain, steps, executed)
        for i, step in enumerate(steps):
            key = self._key(chain, i, step)
            rec = None if new else self.ledger.get(key)
            if rec is None or (rec.status == "failed" and rec.retryable):
                if not execute:
                    return self._result(chain, steps, executed, outcome="pending")
                rec = self._execute(chain, i, step, key, executed)
            if rec.status == "done":
                continue
            if rec.status == "started" or (rec.status == "failed" and rec.retryable):
                return self._result(chain, steps, executed, outcome="in_progress")
            if rec.status == "failed":
                # INVARIANT: the chain is marked compensating (with its failed step) before any step is undone.
                self.ledger.move_chain(chain.decision_id, from_=("running",), to="compensating", now=self.now(),
                                       failed_step=i, error_code=rec.error_code, error_message=rec.error_message)
                return self._compensate(self._chain(chain), steps, executed)
            if rec.status == "needs_review":
                return self._finish(chain, steps, executed, "needs_review", from_=("running",), failed_step=i,
                                    code=rec.error_code or "step_needs_review",
                                    message=f"step {i} (`{step.action}`) needs review: {rec.error_message or ''}")
            # compensating / compensated: another process decided to undo this chain
            return self._compensate(self._chain(chain), steps, executed)
        return self._finish(chain, steps, executed, "done", from_=("running",))

    def _compensate(self, chain: ChainRecord, steps: list[Step], executed: list[str]) -> ChainResult:
        """Undo the done steps before the failed one, last first; stop at the first that cannot be undone."""
        if chain.status != "compensating":
            return self._result(chain, steps, executed)
        failed = chain.failed_step if chain.failed_step is not None else len(steps)
        for j in reversed(range(failed)):
            step = steps[j]
            fkey = self._key(chain, j, step)
            rec = self.ledger.get(fkey)
            if rec is not None and rec.status == "done":
                if step.inverse is None:
                    return self._finish(chain, steps, executed, "failed_needs_review", from_=("compensating",),
                                        code="no_inverse",
                                        message=f"step {j} (`{step.action}`) is done and has no inverse")
                self.ledger.move(fkey, from_=("done",), to="compensating", now=self.now())
                rec = self.ledger.get(fkey)
            if rec is None or rec.status not in ("compensating", "compensated"):
                status = rec.status if rec else "never started"
                if rec is not None and rec.status != "needs_review":
                    self.ledger.move(fkey, from_=(rec.status,), to="needs_review", now=self.now(),
                                     error_code="ledger_inconsistent",
                                     error_message=f"{status} before the failed step {failed}")
                return self._finish(chain, steps, executed, "failed_needs_review", from_=("compensating",),
                                    code="ledger_inconsistent" if status != "needs_review" else "step_needs_review",
                                    message=f"step {j} (`{step.action}`) is {status}: cannot compensate")
            if rec.status == "compensated":
                continue
            assert step.inverse is not None  # a step without an inverse never reaches `compensating`
            ckey = self._key(chain, j, step.inverse, compensation=True)
            crec = self.ledger.get(ckey)
            if crec is None or (crec.status == "failed" and crec.retryable):
                crec = self._execute(chain, j, step.inverse, ckey, executed, compensates=fkey)
            if crec.status == "done":
                if self.ledger.move(fkey, from_=("compensating",), to="compensated", now=self.now()):
                    self._emit(chain.decision_id, COMPENSATED, self._row(fkey), compensation_key=ckey)
                continue
            if crec.status == "started" or (crec.status == "failed" and crec.retryable):
                return self._result(chain, steps, executed, outcome="in_progress")
            # the compensation failed or nobody can tell: a person decides what to do with step j
            if self.ledger.move(fkey, from_=("compensating",), to="needs_review", now=self.now(),
                                error_code="compensation_failed",
                                error_message=f"compensation `{ckey}` is {crec.status}: {crec.error_message or ''}"):
                self._emit(chain.decision_id, NEEDS_REVIEW, self._row(fkey), reason="compensation_failed",
                           compensation_key=ckey)
            return self._finish(chain, steps, executed, "failed_needs_review", from_=("compensating",),
                                code="compensation_failed",
                                message=f"the compensation of step {j} (`{step.action}`) is {crec.status}")
        return self._finish(chain, steps, executed, "failed_compensated", from_=("compensating",))

    # -- one execution ---------------------------------------------------------------------------

    def _execute(self, chain: ChainRecord, i: int, step: Step, key: str, executed: list[str], *,
                 compensates: str | None = None) -> ExecutionRecord:
        """Claim `key` and, if this process won it, run the step once and record how it ended."""
        claim = self.ledger.claim(key, decision_id=chain.decision_id, chain_id=chain.chain_id, step=i,
                                  action=step.action, params=step.params, connector=step.connector,
                                  agent=chain.agent, now=self.now(), compensates=compensates)
        rec = claim.record
        if not claim.won:
            return rec
        comp = compensates is not None
        self._emit(chain.decision_id, COMPENSATION_STARTED if comp else EXECUTION_STARTED, rec, params=step.params)
        executed.append(key)
        connector = self.connectors[step.connector]
        if self.units is not None:
            # INVARIANT: the claim (and its event) is committed before the connector acts.
            self.units.flush()
        try:
            result = connector.execute(step.action, dict(step.params), key=key)
        except PermanentError as exc:
            return self._end(rec, "failed", error_code=exc.code, error_message=str(exc))
        except TransientError as exc:
            if exc.code != CIRCUIT_OPEN:
                return self._unsure(connector, rec, exc)
            # refused by the open circuit before reaching the system: certainly not done
            return self._end(rec, "failed", error_code=exc.code, error_message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in the connector: it may have acted before failing
            return self._unsure(connector, rec, exc)
        return self._end(rec, "done", result=_jsonable(result))

    def _unsure(self, connector: Connector, rec: ExecutionRecord, exc: Exception) -> ExecutionRecord:
        """End an attempt after a fault that may have come before or after the effect (a timeout, transient
        retries exhausted, a bug in the connector): ask the connector, and never guess."""
        answer = self._status(connector, rec.key)
        code = getattr(exc, "code", "connector_error")
        if answer == "done":
            return self._end(rec, "done", reconciled=True, error_code=code,
                             error_message=f"confirmed done after: {exc}")
        if answer == "not_done":
            return self._end(rec, "failed", error_code=code, error_message=str(exc))
        return self._end(rec, "needs_review", error_code="status_unknown",
                         error_message=f"{code}: {exc}; the connector cannot tell whether it took effect")

    def _end(self, rec: ExecutionRecord, status: str, *, result: Any = None, error_code: str | None = None,
             error_message: str | None = None, reconciled: bool = False, retryable: bool = False,
             event: str | None = None, recovery: bool = False, **data: Any) -> ExecutionRecord:
        """Record the end of an attempt; if our own attempt lost its claim meanwhile, fail closed (needs_review).

        With `recovery`, losing the race is normal (the attempt's process was alive after all and
        recorded its outcome first): the recorded outcome stands.
        """
        now = self.now()
        if status == "done" and not reconciled:
            error_code = error_message = None
        ok = self.ledger.finish(rec.key, attempt=rec.attempts, status=status, now=now, result=result,
                                error_code=error_code, error_message=error_message, retryable=retryable,
                                reconciled=reconciled)
        if ok:  # the row as `finish` wrote it (the update matched our attempt): no need to read it back
            after = dataclasses.replace(
                rec, status=status, finished_at=_utc(now), result=_as_stored(result), error_code=error_code,
                error_message=(error_message or "")[:4000] if error_code else None, retryable=retryable,
                reconciled=reconciled)
        else:
            after = self._row(rec.key)
        if not ok:
            if after.status == status and after.attempts == rec.attempts:
                return after  # our own write, repeated after a lost acknowledgement
            if recovery or (after.status == "done" and status == "done"):
                return after  # someone recorded the outcome first
            # Someone (a recovery with too short a `min_age`) took this execution from us while it ran.
            self.ledger.move(rec.key, from_=("started", "failed", "done"), to="needs_review", now=now,
                             error_code="ledger_conflict",
                             error_message=f"attempt {rec.attempts} ended {status} after losing its claim")
            after = self._row(rec.key)
            self._emit(rec.decision_id, NEEDS_REVIEW, after, reason="ledger_conflict")
            return after
        comp = rec.compensates is not None
        if event is None:
            if status == "done":
                event = RECONCILED if reconciled else EXECUTION_DONE
            elif status == "failed":
                event = RECONCILED if retryable else (COMPENSATION_FAILED if comp else EXECUTION_FAILED)
            else:
                event = NEEDS_REVIEW
        self._emit(rec.decision_id, event, after, **data)
        return after

    @staticmethod
    def _status(connector: Connector, key: str) -> str:
        try:
            answer = connector.status(key)
        except Exception:  # noqa: BLE001 - a connector that cannot answer cannot confirm anything
            return "unknown"
        return answer if answer in ("done", "not_done") else "unknown"

    def _reconcile(self, rec: ExecutionRecord, report: RecoveryReport) -> None:
        connector = self.connectors.get(rec.connector)
        answer = self._status(connector, rec.key) if connector is not None else "unknown"
        if answer == "done":
            after = self._end(rec, "done", reconciled=True, event=RECONCILED, recovery=True,
                              connector_status=answer)
            if after.status == "done" and after.reconciled:
                report.reconciled_done.append(rec.key)
        elif answer == "not_done":
            after = self._end(rec, "failed", retryable=True, error_code="execution_interrupted",
                              error_message="the process died before the connector ran it", event=RECONCILED,
                              recovery=True, connector_status=answer)
            if after.status == "failed" and after.retryable:
                report.retryable.append(rec.key)
        else:
            why = "the connector cannot tell" if connector is not None else f"no connector `{rec.connector}`"
            after = self._end(rec, "needs_review", error_code="status_unknown",
                              error_message=f"the process died mid-execution and {why} whether it took effect",
                              event=NEEDS_REVIEW, recovery=True, connector_status=answer)
            if after.status == "needs_review":
                report.needs_review.append(rec.key)

    # -- recording -------------------------------------------------------------------------------

    def _row(self, key: str) -> ExecutionRecord:
        found = self.ledger.get(key)
        assert found is not None  # INVARIANT: ledger rows are never deleted
        return found

    def _chain(self, chain: ChainRecord) -> ChainRecord:
        found = self.ledger.chain(chain.decision_id)
        assert found is not None
        return found

    def _finish(self, chain: ChainRecord, steps: list[Step], executed: list[str], outcome: str, *,
                from_: tuple[str, ...], failed_step: int | None = None, code: str | None = None,
                message: str | None = None) -> ChainResult:
        now = self.now()
        moved = self.ledger.move_chain(chain.decision_id, from_=from_, to=outcome, now=now,
                                       failed_step=failed_step, error_code=code, error_message=message)
        if moved and chain.status in from_:  # the row as `move_chain` wrote it, from the state we hold
            final = dataclasses.replace(
                chain, status=outcome, updated_at=_utc(now),
                finished_at=_utc(now) if outcome in CHAIN_FINAL else chain.finished_at,
                failed_step=failed_step if failed_step is not None else chain.failed_step,
                error_code=code if code is not None else chain.error_code,
                error_message=(message or "")[:4000] if code is not None else chain.error_message)
        else:
            final = self._chain(chain)
        if moved:
            self._audit_chain(final)
        return self._result(final, steps, executed)

    @staticmethod
    def _event_of(rec: ExecutionRecord) -> str:
        """The audit event of an execution's (finished) status."""
        if rec.status == "done":
            return RECONCILED if rec.reconciled else EXECUTION_DONE
        if rec.status == "failed":
            return RECONCILED if rec.retryable else COMPENSATION_FAILED if rec.compensates else EXECUTION_FAILED
        return {"compensated": COMPENSATED}.get(rec.status, NEEDS_REVIEW)

    def _result(self, chain: ChainRecord, steps: list[Step], executed: list[str], *,
                outcome: str | None = None) -> ChainResult:
        rows = {r.key: r for r in self.ledger.executions(chain.decision_id)}
        out = []
        for i, step in enumerate(steps):
            key = self._key(chain, i, step)
            r = rows.get(key)
            comp = rows.get(self._key(chain, i, step.inverse, compensation=True)) if step.inverse else None
            out.append(StepResult(i, step.action, key, r.status if r else None, r.result if r else None,
                                  r.error_code if r else None, r.error_message if r else None,
                                  comp.status if comp else None))
        final: Any = outcome or chain.status
        return ChainResult(chain.decision_id, chain.chain_id, final, out, list(executed), chain.error_code,
                           chain.error_message)

    def _emit(self, decision_id: str, event: str, rec: ExecutionRecord, **extra: Any) -> None:
        """Append the event of `rec`'s status to the audit log, then note it in the ledger (the outbox)."""
        if self.audit is None:
            return
        data: dict[str, Any] = {"key": rec.key, "chain_id": rec.chain_id, "step": rec.step, "action": rec.action,
                                "connector": rec.connector, "agent": rec.agent, "attempt": rec.attempts,
                                "status": rec.status}
        if rec.compensates:
            data["compensates"] = rec.compensates
        if rec.result is not None:
            data["result"] = rec.result
        if rec.error_code:
            data.update(error_code=rec.error_code, error_message=rec.error_message)
        data.update(extra)
        self._audit(decision_id, event, data)
        self.ledger.mark_audited(rec.key, rec.status)

    def _audit_chain(self, chain: ChainRecord, **extra: Any) -> None:
        if self.audit is None:
            return
        data: dict[str, Any] = {"chain_id": chain.chain_id, "agent": chain.agent, "outcome": chain.status}
        if chain.error_code:
            data.update(error_code=chain.error_code, error_message=chain.error_message)
        data.update(extra)
        if chain.status in ("needs_review", "failed_needs_review"):
            self._audit(chain.decision_id, NEEDS_REVIEW, dict(data))
        self._audit(chain.decision_id, CHAIN_FINISHED, data)
        self.ledger.mark_chain_audited(chain.decision_id, chain.status)

    def _audit(self, decision_id: str, event: str, data: dict[str, Any]) -> None:
        assert self.audit is not None
        self.audit(decision_id, event, _jsonable(data))


__all__ = ["ChainResult", "ExecutionError", "Executor", "RecoveryReport", "Step", "StepResult", "plan_of"]
