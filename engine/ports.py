"""The side effects of the governed flow, as the pipeline sees them: typed ports.

The pipeline's stages decide from their arguments; whatever they write — the audit log, the
decision store, the review queue, the execution ledger, the units of work that keep a state
change and its audit event together — goes through one of these protocols, passed in
explicitly. `engine.api.Engine` is the production implementation (SQLAlchemy stores on the
state database); a test may pass anything that has these methods.
"""

from __future__ import annotations

from contextlib import AbstractContextManager as ContextManager
from typing import Any, Protocol


class Unit(Protocol):
    """One transaction shared by the stores in the audit log's database."""

    def atomic(self) -> ContextManager[None]:
        """Writes that commit together or not at all, inside the unit."""
        ...


class UnitsOfWork(Protocol):
    """Where units of work are opened: the state database (`engine.storage.Database`), whose
    stores (the audit log among them, when it lives there) join them."""

    def unit(self) -> ContextManager[Any]:
        """A unit of work for this thread; nested calls join the open one."""
        ...


class AuditPort(Protocol):
    """The hash-chained audit log: events are appended, never changed."""

    def append(self, decision_id: str, step: str, agent: str, data: Any) -> Any:
        """Append one event."""
        ...

    def append_many(self, items: list[Any]) -> Any:
        """Append several events in one transaction."""
        ...

    def current_unit(self) -> Unit | None:
        """The unit of work open on this thread, if any."""
        ...


class DecisionStorePort(Protocol):
    """Decisions that act, kept so that they can be executed later by id."""

    def record(self, *, id: str, agent: str, ruleset: str, outcome: str, source: str, case: dict[str, Any],
               proposals: list[dict[str, Any]]) -> Any:
        """Keep an `execute` decision."""
        ...

    def get(self, decision_id: str) -> Any:
        """The stored decision (`decision_not_found` when there is none)."""
        ...

    def finish(self, decision_id: str, status: str, execution: dict[str, Any]) -> Any:
        """Record how its execution ended."""
        ...


class ReviewQueuePort(Protocol):
    """Escalations waiting for a person."""

    def enqueue(self, **item: Any) -> Any:
        """Add a pending item (or return the one already pending for the same request)."""
        ...

    def discard(self, item_id: str, *, decision_id: str) -> Any:
        """Remove an item whose decision's events could not be written."""
        ...

    def get(self, item_id: str) -> Any:
        """The item (`review_not_found` when there is none)."""
        ...

    def consume(self, item_id: str, proposal_hash: str) -> Any:
        """Mark an approved item applied (once)."""
        ...

    def approve(self, item_id: str, *, reviewer: str, proposal: dict[str, Any], proposal_hash: str,
                note: str = "") -> Any:
        """Settle a pending item with the approved proposal."""
        ...

    def reject(self, item_id: str, *, reviewer: str, reason: str) -> Any:
        """Settle a pending item as rejected."""
        ...


class LedgerPort(Protocol):
    """The execution ledger: which step of which chain ran, under which idempotency key."""

    def get(self, key: str) -> Any:
        """The step recorded under `key`, or None."""
        ...

    def move_chain(self, chain_id: str, **change: Any) -> Any:
        """Move a chain from some states to another."""
        ...


class ExecutorPort(Protocol):
    """Runs a verified chain of steps exactly once through the connectors."""

    ledger: LedgerPort

    def run(self, decision_id: str, agent: str, steps: list[Any]) -> Any:
        """Run the steps (compensating on failure); returns the chain's result."""
        ...


class Ports(Protocol):
    """Everything the governed flow writes to, and the identities it checks."""

    @property
    def audit(self) -> AuditPort: ...

    @property
    def decisions(self) -> DecisionStorePort: ...

    @property
    def queue(self) -> ReviewQueuePort: ...

    @property
    def executor(self) -> ExecutorPort: ...

    @property
    def one_database(self) -> bool:
        """Whether the audit log shares the state database (then related writes commit together)."""
        ...

    def units(self, *, review: bool, execute: bool) -> UnitsOfWork:
        """The database whose units of work hold one decision's writes (its stores opened first)."""
        ...

    def identities_if_used(self) -> Any:
        """The identity store when keys are in play, else None."""
        ...

    def authenticate(self, key: str | None, kind: str = "agent") -> str | None:
        """The identity a key proves (None: no key given)."""
        ...

    def audit_refusal(self, decision_id: str, who: str, exc: Exception, **context: Any) -> None:
        """Record a refusal as a `refused` event."""
        ...


__all__ = ["AuditPort", "DecisionStorePort", "ExecutorPort", "LedgerPort", "Ports", "ReviewQueuePort", "Unit",
           "UnitsOfWork"]
