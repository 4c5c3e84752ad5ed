"""The audit log: an append-only, hash-chained table of events, on SQLite or PostgreSQL.

Writers serialise on the database, not on a Python lock, so threads and separate processes
(API workers, the CLI, a reviewer's session) extend one chain: every append runs in one
transaction that first locks the one-row `audit_head` table (SQLite: `BEGIN IMMEDIATE` takes
the database write lock; PostgreSQL: `SELECT ... FOR UPDATE` on the head row), reads the last
seq and hash, inserts the new events and moves the head. The primary key on `seq` is the
backstop: a writer that somehow got around the lock fails instead of forking the chain. A
lost race or `database is locked` is retried a bounded number of times (tenacity).

The head row also anchors the tail: deleting the last events leaves the head pointing past the
end, which `verify` reports. With a key, the head row is signed too (`sig`, moved with it in the
same transaction), so the last events cannot be cut and the head rewritten to match. Limits,
stated honestly: without a key, someone with write access who rewrites every event after some
point, or cuts the tail, AND rewrites the head cannot be caught by the hashes alone — only by
comparing with an anchor (a seq and hash recorded elsewhere, e.g. the head printed by a previous
`audit verify`). With a key, a copy of an older signed head still fits the log cut back to it:
again only an anchor catches that.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    inspect,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.types import JSON
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from engine.canonical import canonical_json
from engine.errors import shown
from engine.storage import Compiled, Database, StorageError, database, is_sqlite, sqlite_file
from engine.unit_of_work import fast

from .canonical import AuditError, Native, check_json_native

if TYPE_CHECKING:
    from engine.unit_of_work import Unit

from .chain import (
    GENESIS,
    SCHEMA_VERSION,
    AuditEvent,
    ChainChecker,
    Head,
    VerifyReport,
    event_hash,
    hashed_text,
    sign,
    sign_head,
)

HMAC_ENV = "RULEBRIDGE_AUDIT_HMAC_KEY"
MIN_KEY_BYTES = 16
MAX_DATA_BYTES = 4 * 1024 * 1024  # one event; larger is a mistake (or a flood), not an audit record
BATCH = 5000  # rows per read while streaming

metadata = MetaData()
audit_events = Table(
    "audit_events", metadata,
    # INVARIANT: seq is 1..n without gaps; the primary key refuses a second event at one position.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("id", String(40), nullable=False),  # 128 random bits: unique without an index to maintain
    Column("schema", Integer, nullable=False),
    Column("ts", String(40), nullable=False, index=True),
    Column("decision_id", String(200), nullable=False, index=True),
    Column("step", String(64), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("data", Text, nullable=False),  # the canonical JSON text, exactly the bytes that were hashed
    Column("prev", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("sig", String(64), nullable=True),
)
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("sig", String(64), nullable=True),  # `sign_head` with the log's key; added to older logs on open
)
EVENT_COLUMNS = [c.name for c in audit_events.columns]

# Statements built once: constructing and cache-keying them per append costs more than the insert.
_READ_HEAD = select(audit_head.c.seq, audit_head.c.hash, audit_head.c["count"]).where(audit_head.c.id == 1)
_READ_SIGNED_HEAD = _READ_HEAD.add_columns(audit_head.c.sig)
_LOCK_HEAD = _READ_HEAD.with_for_update()
_INSERT_EVENTS = insert(audit_events)
_MOVE_HEAD = (update(audit_head).where(audit_head.c.id == 1, audit_head.c.seq == bindparam("old_seq"))
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), count=bindparam("new_count"),
                      sig=bindparam("new_sig")))


class _LostRace(Exception):
    """The head moved under a writer that believed it held the lock: retry the whole append."""


def hmac_key_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The signing key from `RULEBRIDGE_AUDIT_HMAC_KEY` (text, or `hex:` + hex digits); None if unset.

    A key shorter than 16 bytes is refused: a guessable key signs nothing."""
    raw = (os.environ if environ is None else environ).get(HMAC_ENV, "")
    if not raw:
        return None
    if raw.startswith("hex:"):
        try:
            key = bytes.fromhex(raw[4:])
        except ValueError:
            raise AuditError(f"`{HMAC_ENV}`: the text after `hex:` is not hexadecimal", code="audit_bad_key") from None
    else:
        key = raw.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(f"`{HMAC_ENV}`: the key has {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes",
                         code="audit_bad_key")
    return key


def utc_text(value: dt.datetime | dt.date | str, *, what: str = "time") -> str:
    """A point in time as the log stores it: UTC, ISO 8601 with microseconds (sorts as text).

    Accepts an aware datetime, a date (midnight UTC), or ISO text; text without a zone is UTC."""
    if isinstance(value, str):
        try:
            parsed: dt.datetime | dt.date = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise AuditError(f"{what} `{shown(value)}` is not an ISO 8601 date or time (e.g. "
                             "2026-01-31 or 2026-01-31T09:30:00+01:00)",
                             code="audit_bad_time") from None
        value = parsed
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        raise AuditError(f"{what} must be a datetime, a date or ISO text", code="audit_bad_time")
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_id() -> str:
    return "E-" + secrets.token_hex(16)


@dataclass(frozen=True)
class _Prepared:
    decision_id: str
    step: str
    agent: str
    data: dict[str, Any]
    text: str


def _json_copy(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of `data` that round-trips through JSON unchanged, and its canonical text; or
    `AuditError(audit_not_json)`.

    The encoder and the comparison run in C; the value-by-value check (slow, but it names the
    offending path) runs only when the fast path finds a difference: a tuple, a non-text key, a
    float NaN, an object the encoder refuses, a lone surrogate."""
    try:
        text = canonical_json(data)
        text.encode("utf-8")
        copy = json.loads(text)
        if copy == data:
            return copy, text
    except (TypeError, ValueError, RecursionError):
        pass
    check_json_native(data)
    raise AuditError("`data` does not survive a JSON round trip unchanged", code="audit_not_json")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_field(name: str, value: Any, max_len: int) -> str:
    if type(value) is not str or not value or len(value) > max_len or _CONTROL.search(value):
        raise AuditError(f"`{name}` must be a non-empty text of at most {max_len} characters without control "
                         f"characters, got {value!r:.80}", code="audit_invalid")
    return value


class AuditLog:
    """The hash-chained audit log at a SQLAlchemy URL (tables are created on first use).

    `hmac_key` signs each event (see `hmac_key_from_env`; never stored); `masker` (an
    `engine.audit.mask.Masker`) removes personal data before an event is hashed and stored;
    `now` and `new_id` are injected for deterministic tests. With `create=False` a missing log
    is an error (`audit_not_found`) instead of being created — what read-only commands want.
    """

    def __init__(self, target: Database | str, *, hmac_key: bytes | None = None,
                 now: Callable[[], dt.datetime] | None = None,
                 masker: Any = None, new_id: Callable[[], str] | None = None, create: bool = True,
                 synchronous: str = "NORMAL", attempts: int = 8):
        if hmac_key is not None and len(hmac_key) < MIN_KEY_BYTES:
            raise AuditError(f"the HMAC key has {len(hmac_key)} bytes; use at least {MIN_KEY_BYTES}",
                             code="audit_bad_key")
        self.hmac_key = hmac_key
        self.masker = masker
        self.now = now or _utcnow
        self.new_id = new_id or _new_id
        url = target.url if isinstance(target, Database) else target
        self.url = url
        if not create and is_sqlite(url):
            file = sqlite_file(url)
            if file is None or not file.exists():
                raise AuditError(f"no audit log at `{url}`", code="audit_not_found")
        try:
            self.database, self._owned = database(target, synchronous=synchronous)
        except StorageError as exc:
            raise AuditError(str(exc), code="audit_invalid") from exc
        self.db = self.database.engine
        self._writer = self.database.writer
        dialect = self.db.dialect
        self._lock_head = Compiled(_LOCK_HEAD, dialect)
        self._insert = Compiled(_INSERT_EVENTS, dialect)
        # qmark-style drivers (SQLite) take each row as a tuple in column order: no dict per row
        self._insert_tuples = self._insert.order == EVENT_COLUMNS
        self._move_head = Compiled(_MOVE_HEAD, dialect)
        # Bounded retries of a lost race: `database is locked` after the busy timeout, a deadlock or
        # serialization failure, a duplicate seq (someone wrote around the lock), a moved head.
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts), wait=wait_random_exponential(multiplier=0.005, max=0.5),
            retry=retry_if_exception_type((OperationalError, IntegrityError, _LostRace)), reraise=True)
        try:
            try:
                if create:
                    self._retrying(self._create)
                elif not inspect(self.db).has_table("audit_head"):
                    raise AuditError(f"no audit log at `{url}`", code="audit_not_found")
                # A reader of a log made before heads were signed reads it without the column.
                self._head_signed = create or _has_head_sig(self.db)
            except DatabaseError as exc:
                if not _corrupt(self.db, exc):
                    raise
                raise AuditError(f"the database file is corrupt: {_first_line(exc)}", code="db_corrupt") from exc
        except BaseException:
            if self._owned:
                self.database.close()
            raise
        self.database.join(self)  # every unit of work on the database moves this log's head

    @classmethod
    def from_env(cls, url: str, **kw: Any) -> AuditLog:
        """A log that signs with the key in `RULEBRIDGE_AUDIT_HMAC_KEY` (unsigned when it is unset)."""
        return cls(url, hmac_key=hmac_key_from_env(), **kw)

    def _create(self) -> None:
        with suppress(ProgrammingError, IntegrityError):  # PostgreSQL: another process created them just now
            metadata.create_all(self.db)
        if not _has_head_sig(self.db):  # a log made before heads were signed
            try:
                with self.db.begin() as c:
                    c.exec_driver_sql("ALTER TABLE audit_head ADD COLUMN sig VARCHAR(64)")
            except (OperationalError, ProgrammingError):  # another process added it just now
                if not _has_head_sig(self.db):
                    raise
        with self._writer.begin() as c:
            if c.execute(select(audit_head.c.id).where(audit_head.c.id == 1)).first() is None:
                c.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS, count=0,
                                                    sig=self.head_sig(0, GENESIS, 0)))

    def head_sig(self, seq: int, digest: str, count: int) -> str | None:
        """The signature of a head row under this log's key (None without a key)."""
        return sign_head(self.hmac_key, seq, digest, count) if self.hmac_key is not None else None

    def close(self) -> None:
        """Release the database connections when this log opened them (and stop checkpointing the
        file: it may be removed now); a shared `Database` is closed by its owner."""
        if self._owned:
            self.database.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------
    def _prepare(self, decision_id: Any, step: Any, agent: Any, data: Any) -> _Prepared:
        """Validate, mask and canonicalise one event before any write (nothing is half-written)."""
        _check_field("decision_id", decision_id, 200)
        _check_field("step", step, 64)
        _check_field("agent", agent, 200)
        if type(data) is Native:  # checked and canonicalised by `canonical.native`, once
            data, text = data.data, data.text
        elif type(data) is not dict:
            raise AuditError(f"`data` must be a JSON object, got `{type(data).__name__}`", code="audit_not_json")
        else:
            data, text = _json_copy(data)
        if self.masker is not None:
            masked = self.masker.apply(data, text=text)
            if masked is not data:
                data, text = masked, canonical_json(masked)
        size = len(text.encode("utf-8"))
        if size > MAX_DATA_BYTES:
            raise AuditError(f"`data` is {size} bytes; an event holds at most {MAX_DATA_BYTES}", code="audit_invalid")
        return _Prepared(decision_id, step, agent, data, text)

    def append(self, decision_id: str, step: str, agent: str, data: dict[str, Any]) -> AuditEvent:
        """Append one event; returns it with its seq, hash and signature."""
        return self.append_many([(decision_id, step, agent, data)])[0]

    def append_many(self, items: Iterable[tuple[str, str, str, dict[str, Any]]]) -> list[AuditEvent]:
        """Append events in ONE transaction, in order: all of them or none."""
        prepared = []
        for i, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 4:
                raise AuditError(f"item {i}: expected (decision_id, step, agent, data)", code="audit_invalid")
            prepared.append(self._prepare(*item))
        if not prepared:
            return []
        u = self.database.current_unit()
        if u is not None:  # in this thread's unit of work: commits with it
            return self._append_in(u, prepared)
        try:
            return self._retrying(self._write, prepared)
        except (OperationalError, IntegrityError, _LostRace) as exc:
            raise AuditError(f"the audit log could not be written after retries: {str(exc).splitlines()[0][:200]}",
                             code="audit_unavailable") from exc

    def _write(self, prepared: Sequence[_Prepared]) -> list[AuditEvent]:
        with self._writer.begin() as sa:
            c = fast(sa)
            head = c.exec_driver_sql(self._lock_head.sql, self._lock_head.args({})).first()
            if head is None:
                raise AuditError("the audit head row is missing: run `rulebridge audit verify`",
                                 code="audit_broken")
            seq0, prev, count0 = head
            events = self._insert_rows(c, prepared, seq0, prev)
            seq, digest, count = events[-1].seq, events[-1].hash, count0 + len(events)
            moved = c.exec_driver_sql(self._move_head.sql, self._move_head.args(
                {"old_seq": seq0, "new_seq": seq, "new_hash": digest, "new_count": count,
                 "new_sig": self.head_sig(seq, digest, count)}))
            if moved.rowcount != 1:
                raise _LostRace()
        self.database.committed()
        return events

    def _insert_rows(self, c: Any, prepared: Sequence[_Prepared], seq: int, prev: str) -> list[AuditEvent]:
        """Hash, sign and insert `prepared` after the event (`seq`, `prev`); the caller holds the head lock."""
        # The time is read under the lock, so seq order and time order agree (as far as the clock does).
        now = self.now()
        if now.tzinfo is None:
            raise AuditError("the clock returned a time without a zone", code="audit_bad_time")
        ts = utc_text(now)
        events: list[AuditEvent] = []
        rows = []
        for p in prepared:
            seq += 1
            eid = self.new_id()
            digest = event_hash(hashed_text(seq=seq, id=eid, schema=SCHEMA_VERSION, ts=ts,
                                            decision_id=p.decision_id, step=p.step, agent=p.agent,
                                            data_text=p.text, prev=prev))
            sig = sign(self.hmac_key, digest) if self.hmac_key is not None else None
            events.append(AuditEvent(seq, eid, SCHEMA_VERSION, ts, p.decision_id, p.step, p.agent, p.data,
                                     prev, digest, sig))
            # INVARIANT: in the order of EVENT_COLUMNS (the table's column order)
            row = (seq, eid, SCHEMA_VERSION, ts, p.decision_id, p.step, p.agent, p.text, prev, digest, sig)
            rows.append(row if self._insert_tuples else self._insert.args(dict(zip(EVENT_COLUMNS, row, strict=True))))
            prev = digest
        c.exec_driver_sql(self._insert.sql, rows if len(rows) > 1 else rows[0])
        return events

    # -- a participant in the units of work of its database (`engine.unit_of_work`) ------------------
    def unit(self) -> AbstractContextManager[Unit]:
        """A unit of work on this log's database (`Database.unit`): the events appended and what
        the database's other stores write in it commit together."""
        return self.database.unit()

    def current_unit(self) -> Unit | None:
        """The unit of work open in this thread on this log's database, or None."""
        return self.database.current_unit()

    def flush(self) -> None:
        """Commit this thread's unit of work now, if one is open (`Database.flush`)."""
        self.database.flush()

    def unit_begun(self, unit: Unit, c: Any) -> None:
        """A unit's transaction began: lock the head row (PostgreSQL `FOR UPDATE`; SQLite holds
        the write lock already) and keep where the chain stands, as (seq at begin, head)."""
        head = c.exec_driver_sql(self._lock_head.sql, self._lock_head.args({})).first()
        if head is None:
            raise AuditError("the audit head row is missing: run `rulebridge audit verify`", code="audit_broken")
        unit.state[self] = (head[0], (head[0], head[1], head[2]))

    def _append_in(self, unit: Unit, prepared: Sequence[_Prepared]) -> list[AuditEvent]:
        c = unit.conn()
        seq0, (seq, prev, count) = unit.state[self]
        events = self._insert_rows(c, prepared, seq, prev)
        unit.state[self] = (seq0, (events[-1].seq, events[-1].hash, count + len(events)))
        return events

    def unit_committing(self, unit: Unit, c: Any) -> None:
        """Move the head once, to the last event the unit appended (nothing when it appended none)."""
        seq0, (seq, digest, count) = unit.state[self]
        if seq == seq0:
            return
        moved = c.exec_driver_sql(self._move_head.sql, self._move_head.args(
            {"old_seq": seq0, "new_seq": seq, "new_hash": digest, "new_count": count,
             "new_sig": self.head_sig(seq, digest, count)}))
        if moved.rowcount != 1:  # pragma: no cover - the head is locked by this transaction
            raise AuditError("the audit head moved under a locked transaction", code="audit_unavailable")

    # -- reading ------------------------------------------------------------------------------------
    def _reader(self) -> Any:
        """A connection whose reads share one snapshot (SQLite: a read transaction; PostgreSQL:
        REPEATABLE READ), so the head and the events agree even while writers append."""
        conn = self.db.connect()
        if self.db.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        return conn

    def head(self) -> Head | None:
        """The head row: last seq, last hash, count, signature (None if it was removed)."""
        with self._reader() as c:
            return _head(c, signed=self._head_signed)

    def integrity_problems(self, *, limit: int = 10) -> list[str]:
        """What the database's own integrity check finds wrong with its file (SQLite: `PRAGMA
        integrity_check`; empty when it is sound, and always on PostgreSQL, which checks its pages
        itself). A broken page the chain walk never reads (an index, another table) shows here."""
        if self.db.dialect.name != "sqlite":
            return []
        with self.db.connect() as c:
            rows = [str(r[0]) for r in c.exec_driver_sql(f"PRAGMA integrity_check({int(limit)})")]
        return [] if rows == ["ok"] else rows

    def verify(self, *, limit: int | None = None, anchor: tuple[int, str] | None = None,
               batch: int = BATCH) -> VerifyReport:
        """Check the database file, then walk the chain from seq 1, in batches, and report the
        first broken event (or ok). A corrupt file is reported as `db_corrupt`.

        `limit` checks only the first `limit` events (then the head is not compared unless that
        was all of them); `anchor` is a (seq, hash) recorded elsewhere that must still hold."""
        checker = ChainChecker(self.hmac_key, anchor)
        signatures = "checked" if self.hmac_key is not None else "not_checked"
        complete = True
        try:
            problems = self.integrity_problems()
            if problems:
                return VerifyReport(False, 0, None, None, "db_corrupt", "the database file is corrupt: "
                                    f"integrity check: {'; '.join(p[:200] for p in problems[:3])}"
                                    + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""),
                                    signatures=signatures)
            with self._reader() as c:
                head = _head(c, signed=self._head_signed)
                for row in _stored_rows(c, batch):
                    if limit is not None and checker.checked >= limit:
                        complete = False  # there is a row beyond the limit: the tail was not reached
                        break
                    if not checker.feed(row):
                        break
        except DatabaseError as exc:
            if not _corrupt(self.db, exc):
                raise
            return VerifyReport(False, checker.checked, None, None, "db_corrupt",
                                f"the database file is corrupt: {_first_line(exc)}", signatures=signatures)
        return checker.finish(head, complete=complete)

    def _row_event(self, row: Any) -> AuditEvent:
        m = row._mapping
        return AuditEvent(m["seq"], m["id"], m["schema"], m["ts"], m["decision_id"], m["step"], m["agent"],
                          json.loads(m["data"]), m["prev"], m["hash"], m["sig"])

    def trace(self, decision_id: str) -> list[AuditEvent]:
        """Every event of one decision, in order (empty if the log has none)."""
        q = select(audit_events).where(audit_events.c.decision_id == decision_id).order_by(audit_events.c.seq)
        with self._reader() as c:
            return [self._row_event(r) for r in c.execute(q)]

    def _window(self, q: Any, since: Any, until: Any) -> Any:
        if since is not None:
            q = q.where(audit_events.c.ts >= utc_text(since, what="since"))
        if until is not None:
            q = q.where(audit_events.c.ts < utc_text(until, what="until"))
        return q

    def events(self, since: Any = None, until: Any = None, *, batch: int = BATCH) -> Iterator[AuditEvent]:
        """Events in seq order, `since` ≤ ts < `until`, streamed in batches from one snapshot."""
        base = self._window(select(audit_events), since, until).order_by(audit_events.c.seq)
        with self._reader() as c:
            last = None
            while True:
                q = base if last is None else base.where(audit_events.c.seq > last)
                rows = c.execute(q.limit(batch)).all()
                for r in rows:
                    yield self._row_event(r)
                if len(rows) < batch:
                    return
                last = rows[-1].seq

    def export(self, out: TextIO, fmt: str = "jsonl", since: Any = None, until: Any = None) -> int:
        """Write events as JSON Lines (one canonical event per line) or CSV (`data` as canonical JSON).

        Each record carries `hash` and `sig`, so an export can be re-verified without the database."""
        from .report import write_events

        return write_events(out, self.events(since, until), fmt)

    def stats(self, since: Any = None, until: Any = None) -> dict[str, Any]:
        """Decisions by source and outcome, per rule, per ruleset and per agent, and events by step."""
        from .report import decision_stats

        return decision_stats(self, since, until)

    def json_field(self, key: str) -> Any:
        """A SQL expression for `data ->> key` on this database (data is stored as text)."""
        col = audit_events.c.data
        if self.db.dialect.name == "postgresql":
            return type_coerce(col, Text).cast(JSONB)[key].astext
        if self.db.dialect.name == "sqlite":
            return func.json_extract(col, f"$.{key}")
        return type_coerce(col, JSON)[key].as_string()



def _stored_rows(c: Connection, batch: int) -> Iterator[Any]:
    """Every stored event row in seq order, `data` as stored text, read in keyset batches."""
    cols = [audit_events.c[n] for n in EVENT_COLUMNS]
    last = None
    while True:
        q = select(*cols).order_by(audit_events.c.seq).limit(batch)
        rows = c.execute(q if last is None else q.where(audit_events.c.seq > last)).all()
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1].seq


def _head(c: Connection, *, signed: bool = True) -> Head | None:
    row = c.execute(_READ_SIGNED_HEAD if signed else _READ_HEAD).first()
    return None if row is None else Head(row[0], row[1], row[2], row[3] if signed else None)


def _corrupt(db: SAEngine, exc: DatabaseError) -> bool:
    """Whether a database error says the SQLite file is damaged (`database disk image is
    malformed`, `file is not a database`: the driver's plain `DatabaseError`), not busy, locked or
    gone (`OperationalError`), nor a refused statement (`IntegrityError`, `ProgrammingError`)."""
    return db.dialect.name == "sqlite" and type(exc) is DatabaseError


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def _has_head_sig(db: SAEngine) -> bool:
    """Whether the head table has its signature column (older releases made it without)."""
    return any(col["name"] == "sig" for col in inspect(db).get_columns("audit_head"))
