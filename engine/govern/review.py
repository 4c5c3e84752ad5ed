"""The review queue: escalations wait here, with their full context, for a person.

Stored with SQLAlchemy (SQLite in the workspace by default; any SQLAlchemy URL works). Every
state change is one conditional UPDATE (`... WHERE status = 'pending'`), so two reviewers
racing on one item cannot both win, and an approval can be consumed (applied) exactly once.

States: pending → approved → applied, pending → rejected, pending → expired (fail closed:
an item nobody decided in time counts as denied).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.errors import RulebridgeError, shown
from engine.storage import Compiled, Database, Store, default_url, ensure_tables, row_reader
from engine.storage import utc as _utc

__all__ = ["ReviewError", "ReviewItem", "ReviewQueue", "default_url"]

STATUSES = ("pending", "approved", "rejected", "expired", "applied")

metadata = MetaData()
review_items = Table(
    "review_items", metadata,
    Column("id", String(24), primary_key=True),
    Column("case_key", String(200), nullable=False, index=True),
    Column("decision_id", String(64), nullable=False),
    Column("ruleset", String(200), nullable=False),
    Column("case_type", String(200), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("proposal", JSON, nullable=True),
    Column("proposal_hash", String(64), nullable=True),
    Column("context", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("reviewer", String(200), nullable=True),
    Column("note", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("approved", JSON, nullable=True),  # the exact proposal approved
    Column("approved_hash", String(64), nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=True),
)
# INVARIANT: at most one pending item per case, enforced by the database (two processes enqueueing
# the same case at once cannot both insert), not by a read-then-write in Python. The engine's
# `case_key` (`engine.pipeline.case_key`) hashes who asks and everything asked, so only the same
# request again shares a pending item: never another agent's case, nor another under the same id.
Index("review_items_one_pending_per_case", review_items.c.case_key, unique=True,
      sqlite_where=review_items.c.status == "pending", postgresql_where=review_items.c.status == "pending")


def new_item_id() -> str:
    """A new review item id: `R-` and 40 random bits."""
    return "R-" + secrets.token_hex(5)


# Statements built once (a statement built per call costs more than SQLite's work on it).
_BY_ID = select(review_items).where(review_items.c.id == bindparam("item_id"))
_COLS = [c.name for c in review_items.columns]
_TIMES = tuple(_COLS.index(k) for k in ("created_at", "expires_at", "decided_at", "applied_at"))


class ReviewError(RulebridgeError):
    """A review command that cannot be done; `code` is stable (review_not_found, review_not_pending, ...)."""

    code = "review_error"


MIN_HASH_PREFIX = 12  # hex characters: 48 bits, what `review show` and `review approve` print


def expected_hash(text: str) -> str:
    """The proposal hash a reviewer says they reviewed, normalised (trimmed, lower case); a prefix
    of fewer than `MIN_HASH_PREFIX` characters is refused (`review_hash_too_short`): an empty one
    would bind the approval to nothing."""
    given = text.strip().lower()
    if len(given) < MIN_HASH_PREFIX:
        raise ReviewError(f"the expected proposal hash `{given}` is too short: give at least {MIN_HASH_PREFIX} "
                          "hex characters of the hash `review show` prints", code="review_hash_too_short")
    return given


@dataclass
class ReviewItem:
    id: str
    case_key: str
    decision_id: str
    ruleset: str
    case_type: str
    agent: str
    status: str
    reason: str
    message: str
    proposal: dict[str, Any] | None
    proposal_hash: str | None
    context: dict[str, Any]
    created_at: dt.datetime
    expires_at: dt.datetime
    reviewer: str | None = None
    note: str | None = None
    decided_at: dt.datetime | None = None
    approved: dict[str, Any] | None = None
    approved_hash: str | None = None
    applied_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("created_at", "expires_at", "decided_at", "applied_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


class ReviewQueue(Store):
    """Persisted escalations. Time is injected (`clock`) so expiry can be tested. Its writes join
    the units of work of its database (`engine.storage.Store`)."""

    def __init__(self, target: Database | str, *, expire_after: dt.timedelta = dt.timedelta(hours=72),
                 clock: Callable[[], dt.datetime] | None = None,
                 on_expired: Callable[[list[ReviewItem]], None] | None = None):
        self._open(target)
        self.url = self.database.url
        ensure_tables(metadata, self.db)
        self.expire_after = expire_after
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.on_expired = on_expired  # told of the items this queue expired (the engine audits them)
        d = self.db.dialect  # the enqueue path's statements, compiled once (see `engine.storage.Compiled`)
        self._insert = Compiled(insert(review_items).values({k: bindparam(f"v_{k}") for k in _COLS}), d)
        self._pending = Compiled(select(review_items).where(review_items.c.case_key == bindparam("w_case_key"),
                                                            review_items.c.status == "pending"), d)
        self._read = row_reader(review_items, d, ReviewItem, _TIMES)

    def _row(self, r: Any) -> ReviewItem:
        m = dict(r._mapping)
        for k in ("created_at", "expires_at", "decided_at", "applied_at"):
            m[k] = _utc(m[k])
        return ReviewItem(**m)

    def enqueue(self, *, case_key: str, decision_id: str, ruleset: str, case_type: str, agent: str, reason: str,
                message: str, proposal: dict[str, Any] | None, proposal_hash: str | None,
                context: dict[str, Any], item_id: str | None = None) -> ReviewItem:
        """Add an escalation; a case already pending (same `case_key`) is not added twice (the
        pending item is returned). `item_id` is the new item's id (default: a random `R-...`)."""
        now = self.clock()
        if self._unit() is not None:
            # In a unit of work the write lock is held (SQLite) or the insert is fenced by the unique
            # index anyway (PostgreSQL): look for the pending item first, before serialising the context.
            with self._tx() as c:
                existing = self._pending.run(c, {"w_case_key": case_key}).first()
            if existing is not None:
                return self._read(existing)
        context = json.loads(json.dumps(context, default=str))
        for _ in range(5):
            # Insert first (it takes the write lock at once); the unique index refuses a second pending item.
            item_id = item_id or new_item_id()
            row: dict[str, Any] = {"id": item_id, "case_key": case_key, "decision_id": decision_id, "ruleset": ruleset,
                   "case_type": case_type, "agent": agent, "status": "pending", "reason": reason,
                   "message": message[:4000], "proposal": proposal, "proposal_hash": proposal_hash,
                   "context": context, "created_at": now, "expires_at": now + self.expire_after, "reviewer": None,
                   "note": None, "decided_at": None, "approved": None, "approved_hash": None, "applied_at": None}
            try:
                with self._tx() as c, self._savepoint(c):
                    self._insert.run(c, {f"v_{k}": v for k, v in row.items()})
                # the item as written, without reading it back (JSON as stored, times with their zone)
                for k in ("created_at", "expires_at"):
                    row[k] = _utc(row[k])
                if proposal is not None:
                    row["proposal"] = json.loads(json.dumps(proposal))
                return ReviewItem(**row)
            except IntegrityError:
                item_id = None
                with self._rx() as c:
                    existing = self._pending.run(c, {"w_case_key": case_key}).first()
                if existing is not None:
                    return self._read(existing)
                # the pending item was decided in between: try again
        raise ReviewError(f"could not enqueue case `{case_key}`", code="review_conflict")

    def discard(self, item_id: str, *, decision_id: str) -> bool:
        """Remove the pending item just enqueued for `decision_id` whose decision could not be
        recorded (its audit events were refused): an item without its events must not wait for a
        person. Only that item, only while pending; never raises (the caller raises the error that
        made it necessary)."""
        try:
            with self._tx() as c:
                return bool(c.execute(delete(review_items).where(review_items.c.id == item_id,
                                                                 review_items.c.decision_id == decision_id,
                                                                 review_items.c.status == "pending")).rowcount == 1)
        except Exception:  # noqa: BLE001 - the database failing too: the audit error is the one to raise
            return False

    def expire(self) -> int:
        """Mark every pending item past its deadline `expired` (counted as denied); `on_expired` is
        told of exactly the items this call expired (RETURNING: another process's are its own)."""
        now = self.clock()
        with self._tx() as c:  # in a unit of work, the expiry commits with the events that record it
            rows = c.execute(update(review_items).where(review_items.c.status == "pending",
                                                        review_items.c.expires_at <= now)
                             .values(status="expired", decided_at=now, note="expired: no decision in time")
                             .returning(*review_items.c)).all()
        if rows and self.on_expired is not None:
            self.on_expired([self._row(r) for r in rows])
        return len(rows)

    def list(self, status: str | None = None, limit: int = 200) -> list[ReviewItem]:
        self.expire()
        q = select(review_items).order_by(review_items.c.created_at, review_items.c.id).limit(limit)
        if status:
            q = q.where(review_items.c.status == status)
        with self._rx() as c:
            return [self._row(r) for r in c.execute(q)]

    def get(self, item_id: str) -> ReviewItem:
        self.expire()
        with self._rx() as c:
            r = c.execute(_BY_ID, {"item_id": item_id}).first()
        if r is None:
            raise ReviewError(f"no review item `{shown(item_id)}`", code="review_not_found")
        return self._row(r)

    def _decide(self, item_id: str, values: dict[str, Any]) -> ReviewItem:
        now = self.clock()
        with self._tx() as c:
            res = c.execute(update(review_items).where(review_items.c.id == item_id,
                                                       review_items.c.status == "pending",
                                                       review_items.c.expires_at > now)
                            .values(decided_at=now, **values))
            changed = res.rowcount == 1
        item = self.get(item_id)  # outside the write transaction (SQLite: one writer at a time)
        if not changed:
            raise ReviewError(f"review item `{item_id}` is {item.status}, not pending; nothing was changed",
                              code="review_not_pending")
        return item

    def approve(self, item_id: str, *, reviewer: str, proposal: dict[str, Any], proposal_hash: str,
                note: str = "") -> ReviewItem:
        """Record an approval of the exact (already verified) proposal; only a pending item can be approved."""
        return self._decide(item_id, {"status": "approved", "reviewer": reviewer, "note": note,
                                      "approved": proposal, "approved_hash": proposal_hash})

    def reject(self, item_id: str, *, reviewer: str, reason: str) -> ReviewItem:
        return self._decide(item_id, {"status": "rejected", "reviewer": reviewer, "note": reason})

    def consume(self, item_id: str, approved_hash: str) -> bool:
        """Apply an approval once: approved → applied for this exact proposal hash; False otherwise."""
        with self._tx() as c:
            res = c.execute(update(review_items).where(review_items.c.id == item_id,
                                                       review_items.c.status == "approved",
                                                       review_items.c.approved_hash == approved_hash)
                            .values(status="applied", applied_at=self.clock()))
            return bool(res.rowcount == 1)

    def counts(self) -> dict[str, int]:
        self.expire()
        out = dict.fromkeys(STATUSES, 0)
        with self._rx() as c:
            for status, n in c.execute(select(review_items.c.status, func.count())
                                       .group_by(review_items.c.status)):
                out[status] = n
        return out


assert _COLS == list(ReviewItem.__dataclass_fields__), "ReviewItem follows the table's columns"
