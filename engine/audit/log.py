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
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
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
    create_engine,
    event,
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

from .canonical import AuditError, Native, check_json_native

if TYPE_CHECKING:
    import sqlite3

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


class _Compiled:
    """A Core statement compiled once for a dialect, run with `exec_driver_sql`.

    The append path runs three statements per transaction; SQLAlchemy's per-execution work
    (cache key, parameter processing) costs about as much as SQLite's insert itself. The SQL is
    still generated by SQLAlchemy from the table definitions, for the engine's dialect, and runs
    through the same connection, transaction and error handling; only the per-call compile-cache
    lookup is skipped. No column has a type that needs bind processing (integers and text)."""

    def __init__(self, stmt: Any, dialect: Any):
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)
        self.order = list(compiled.positiontup) if compiled.positional and compiled.positiontup else None

    def args(self, values: dict[str, Any]) -> Any:
        merged = {**self.defaults, **values}
        return tuple(merged[k] for k in self.order) if self.order is not None else merged


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


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for an in-memory database)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


# SQLite checkpoints (copies the WAL into the database file) inside the commit that takes the WAL
# past `wal_autocheckpoint` pages (default 1,000): that one commit pays milliseconds — the governed
# path's p99. The log's writers keep a high threshold as a safety net and a background thread
# checkpoints instead, shortly after commits (`_Checkpointer`).
AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_AFTER_S = 0.5


class _Checkpointer:
    """One daemon thread per process: a PASSIVE checkpoint of each SQLite file the log committed
    to, at most `CHECKPOINT_AFTER_S` after the commit (one for a burst of commits).

    PASSIVE never waits for and never blocks readers or writers; what it cannot copy now (a reader
    still uses an older snapshot) is copied by a later pass. Committed data is durable in the WAL
    whether or not it was copied yet: the guarantees do not depend on when this runs, and if it
    cannot run (no thread, a busy file) the writers' own checkpoint at `AUTOCHECKPOINT_PAGES`
    still bounds the WAL."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):  # a forked child starts without the thread
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._busy = threading.Lock()  # held while a file is checkpointed
        self._dirty: set[str] = set()
        self._closed: set[str] = set()  # files whose log was closed since they were taken for a pass
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def forget(self, path: str) -> None:
        """The log on `path` was closed: no checkpoint of it any more (one running is waited for), so
        the files can be removed without a late pass opening the database again."""
        with self._busy, self._lock:
            self._dirty.discard(path)
            self._closed.add(path)

    def touch(self, path: str) -> None:
        """`path` had a commit: checkpoint it soon."""
        with self._lock:
            self._dirty.add(path)
            self._closed.discard(path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rulebridge-wal-checkpoint", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        import sqlite3

        while True:
            self._wake.wait()
            time.sleep(CHECKPOINT_AFTER_S)
            self._wake.clear()  # before taking the files: a commit from now on wakes the next pass
            with self._lock:
                paths, self._dirty = self._dirty, set()
                self._closed -= paths
            for path in paths:
                with self._busy:
                    with self._lock:
                        if path in self._closed:  # closed after it was taken: leave the files alone
                            continue
                    try:  # mode=rw: a file deleted meanwhile is not created again
                        c = sqlite3.connect(Path(path).as_uri() + "?mode=rw", uri=True, timeout=0.05,
                                            isolation_level=None)
                        try:
                            c.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        finally:
                            c.close()
                    except sqlite3.Error:  # busy, or gone: a later commit asks again
                        pass


_checkpointer = _Checkpointer()


def open_engine(url: str, *, synchronous: str = "NORMAL") -> SAEngine:
    """An SQLAlchemy engine for the log. SQLite gets WAL, a busy timeout and explicit transactions.

    SQLite: the driver's own implicit BEGIN is switched off so that each transaction starts with
    the BEGIN we choose — `BEGIN IMMEDIATE` for writers (execution option `audit_write`), which
    takes the write lock before the head is read, plain `BEGIN` (a snapshot) for readers.
    `synchronous=NORMAL` (the default, as for the review queue in the same file) survives a crash
    of the process but may lose the last commits on an OS crash or power cut — atomically, head
    and events together, so the chain stays valid and the loss is NOT visible to `verify`.
    `FULL` fsyncs the WAL at every commit so a committed event survives a power cut, at the
    cost of one fsync per append (per decision with `append_many`). See benchmarks/audit_append.py.
    """
    if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise AuditError(f"synchronous must be FULL, NORMAL or EXTRA, not `{synchronous}`", code="audit_invalid")
    from engine import storage

    if not _is_sqlite(url):
        eng = create_engine(url)
        if storage.tracked is not None:
            storage.tracked.append(eng)
        return eng
    file = _sqlite_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})

    @event.listens_for(eng, "connect")
    def _pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        if file is not None:  # checkpoints in the background (`_Checkpointer`); this is the safety net
            cur.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(eng, "begin")
    def _begin(conn: Connection) -> None:
        # Straight to the driver: this runs once per transaction, on the append hot path.
        # (a `begin` event always has its driver connection: no check on the append hot path)
        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("audit_write") else "BEGIN")

    return eng


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

    def __init__(self, url: str, *, hmac_key: bytes | None = None, now: Callable[[], dt.datetime] | None = None,
                 masker: Any = None, new_id: Callable[[], str] | None = None, create: bool = True,
                 synchronous: str = "NORMAL", attempts: int = 8):
        if hmac_key is not None and len(hmac_key) < MIN_KEY_BYTES:
            raise AuditError(f"the HMAC key has {len(hmac_key)} bytes; use at least {MIN_KEY_BYTES}",
                             code="audit_bad_key")
        self.url = url
        self.hmac_key = hmac_key
        self.masker = masker
        self.now = now or _utcnow
        self.new_id = new_id or _new_id
        if not create and _is_sqlite(url):
            file = _sqlite_file(url)
            if file is None or not file.exists():
                raise AuditError(f"no audit log at `{url}`", code="audit_not_found")
        self.db = open_engine(url, synchronous=synchronous)
        file = _sqlite_file(url) if _is_sqlite(url) else None
        self._wal_file = str(file.resolve()) if file is not None else None  # checkpointed after commits
        self._writer = self.db.execution_options(audit_write=True)
        self._tls = threading.local()  # the unit of work open in each thread (`unit`)
        dialect = self.db.dialect
        self._lock_head = _Compiled(_LOCK_HEAD, dialect)
        self._insert = _Compiled(_INSERT_EVENTS, dialect)
        # qmark-style drivers (SQLite) take each row as a tuple in column order: no dict per row
        self._insert_tuples = self._insert.order == EVENT_COLUMNS
        self._move_head = _Compiled(_MOVE_HEAD, dialect)
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
            self.db.dispose()
            raise

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
        """Release the database connections (and stop checkpointing the file: it may be removed now)."""
        if self._wal_file:
            _checkpointer.forget(self._wal_file)
        self.db.dispose()

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
        u: Unit | None = getattr(self._tls, "unit", None)
        if u is not None:  # in this thread's unit of work: commits with it
            return u.append(prepared)
        try:
            return self._retrying(self._write, prepared)
        except (OperationalError, IntegrityError, _LostRace) as exc:
            raise AuditError(f"the audit log could not be written after retries: {str(exc).splitlines()[0][:200]}",
                             code="audit_unavailable") from exc

    def _write(self, prepared: Sequence[_Prepared]) -> list[AuditEvent]:
        with self._writer.begin() as sa:
            c: Any = _DriverConnection(sa) if self.db.dialect.name == "sqlite" else sa
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
        if self._wal_file is not None:
            _checkpointer.touch(self._wal_file)
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

    # -- one transaction shared with the other stores of the same database ----------------------------
    def unit(self) -> AbstractContextManager[Unit]:
        """A unit of work on this log's database for the current thread (see `Unit`); nested
        calls join the unit already open. Leaving it commits what is still open."""
        return self._unit_scope()

    @contextmanager
    def _unit_scope(self) -> Iterator[Unit]:
        u = getattr(self._tls, "unit", None)
        if u is not None:
            yield u
            return
        u = self._tls.unit = Unit(self)
        try:
            yield u
        except BaseException:
            u.settle()
            raise
        else:
            u.flush()
        finally:
            self._tls.unit = None
            u.close()

    def current_unit(self) -> Unit | None:
        """The unit of work open in this thread, or None."""
        return getattr(self._tls, "unit", None)

    def flush(self) -> None:
        """Commit the transaction of this thread's unit now, if one is open (the next write begins
        another): what must be durable before something outside the database happens."""
        u = getattr(self._tls, "unit", None)
        if u is not None:
            u.flush()

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



class _Rows:
    """A driver cursor's result, with the parts of SQLAlchemy's result the stores use."""

    __slots__ = ("cur",)

    def __init__(self, cur: sqlite3.Cursor):
        self.cur = cur

    @property
    def rowcount(self) -> int:
        return self.cur.rowcount

    def first(self) -> Any:
        return self.cur.fetchone()

    def all(self) -> list[Any]:
        return self.cur.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cur)


class _DriverConnection:
    """The unit's connection on SQLite: `exec_driver_sql` goes straight to the driver's connection —
    the same connection and transaction, the same SQL (compiled by SQLAlchemy for the dialect), its
    errors raised as SQLAlchemy's (`IntegrityError`, `OperationalError`), without SQLAlchemy's
    per-statement machinery (events, execution context, result metadata), which costs several
    times SQLite's own work on these one-row statements. Core statements (`execute`) and
    savepoints go through SQLAlchemy as usual."""

    __slots__ = ("_errors", "raw", "sa")

    def __init__(self, sa: Connection):
        import sqlite3

        self.sa = sa
        raw = sa.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)  # INVARIANT: made only for a unit's SQLite connection
        self.raw = raw
        self._errors = sqlite3.Error

    def exec_driver_sql(self, sql: str, params: Any = ()) -> _Rows:
        from sqlalchemy.exc import DBAPIError

        try:
            if type(params) is list:
                return _Rows(self.raw.executemany(sql, params))
            return _Rows(self.raw.execute(sql, params))
        except self._errors as exc:
            raise DBAPIError.instance(sql, params, exc, self._errors, dialect=self.sa.dialect) from exc

    def execute(self, *a: Any, **kw: Any) -> Any:
        return self.sa.execute(*a, **kw)

    def begin_nested(self) -> Any:
        return self.sa.begin_nested()

    @property
    def dialect(self) -> Any:
        return self.sa.dialect


class Unit:
    """One transaction on the log's database, shared with the stores kept in the same database
    (execution ledger, decision store, review queue: `share(log)`), for one thread.

    Between two `flush`es, everything those stores write and every event appended commits in ONE
    transaction, atomically: a state change and its audit event are never apart. The transaction
    begins lazily, at the first write, the way every append begins: SQLite `BEGIN IMMEDIATE`
    (the database's write lock), PostgreSQL `SELECT ... FOR UPDATE` of the head row — so writers
    in other threads and processes still serialise on the head and extend one chain; the head
    row moves once, at the commit. Reads by the stores join the transaction while it is open
    (they see its writes) and use their own connections otherwise (they never begin one).

    `flush` commits (what must be durable before something outside the database happens: a
    connector call); leaving the unit commits what is open. When the body fails, what it had
    written is committed as far as the database still accepts it (each write is a complete state
    change, as when every store committed on its own) and the error is raised."""

    def __init__(self, log: AuditLog):
        self.log = log
        self._conn: Connection | None = None  # checked out for the unit's life, returned by `close`
        self._fast: Any = None
        self._c: Any = None  # set while a transaction is open: the connection the stores write through
        self._t: Any = None
        self._seq0 = 0
        self._head: tuple[int, str, int] = (0, GENESIS, 0)
        self.commits = 0

    @property
    def open(self) -> bool:
        """Whether a transaction is open (something was written since the last commit)."""
        return self._c is not None

    @property
    def dialect(self) -> str:
        return self.log.db.dialect.name

    def conn(self) -> Any:
        """The open transaction's connection (a SQLAlchemy `Connection`; on SQLite one whose
        `exec_driver_sql` runs on the driver, see `_DriverConnection`); begins a transaction (and
        takes the head lock) if none is open."""
        c = self._c
        if c is None:
            c = self._begin()
        return c

    def savepoint(self, c: Any) -> AbstractContextManager[Any]:
        """Around a statement whose failure (a duplicate key) the caller handles: PostgreSQL aborts
        the whole transaction on an error, unless it happened inside a savepoint; SQLite undoes
        only the failed statement."""
        return c.begin_nested() if self.dialect == "postgresql" else nullcontext()

    def _try_begin(self) -> tuple[Any, Any, Any]:
        log = self.log
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = log._writer.connect()
            self._fast = _DriverConnection(self._conn) if self.dialect == "sqlite" else self._conn
        c = self._fast
        try:
            t = self._conn.begin()
            head = c.exec_driver_sql(log._lock_head.sql, log._lock_head.args({})).first()
        except BaseException:
            self.close()
            raise
        return c, t, head

    def _begin(self) -> Any:
        try:
            try:
                c, t, head = self._try_begin()
            except OperationalError:  # `database is locked` past the busy timeout, a dropped connection
                c, t, head = Retrying(stop=stop_after_attempt(7), reraise=True,
                                      wait=wait_random_exponential(multiplier=0.005, max=0.5),
                                      retry=retry_if_exception_type(OperationalError))(self._try_begin)
        except OperationalError as exc:
            raise AuditError(f"the state database could not be locked: {str(exc).splitlines()[0][:200]}",
                             code="audit_unavailable") from exc
        if head is None:
            t.rollback()
            raise AuditError("the audit head row is missing: run `rulebridge audit verify`", code="audit_broken")
        self._c, self._t = c, t
        self._seq0 = head[0]
        self._head = (head[0], head[1], head[2])
        return c

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Writes that commit together or not at all, inside the unit: when the block fails, what
        it wrote (store rows and events) is rolled back to a savepoint taken at its start, and
        the error is raised; what the unit wrote before the block stays. A `flush` inside the
        block commits what the block wrote so far (it is then no longer undone)."""
        c = self.conn()  # the transaction (and the head lock) the block's writes join
        t, head = self._t, self._head
        sp = c.begin_nested()
        try:
            yield
        except BaseException:
            if self._t is t:  # still the transaction the savepoint belongs to
                try:
                    sp.rollback()
                    self._head = head
                except Exception:  # noqa: BLE001 - the savepoint went with the transaction: end it all
                    self._c = self._t = None
                    with suppress(Exception):  # the block's error is the one raised
                        t.rollback()
            raise
        else:
            if self._t is t:
                sp.commit()

    def close(self) -> None:
        """Give the connection back (a transaction still open is rolled back by the pool)."""
        conn, self._conn, self._c, self._t, self._fast = self._conn, None, None, None, None
        if conn is not None:
            conn.close()

    def append(self, prepared: Sequence[_Prepared]) -> list[AuditEvent]:
        c = self.conn()
        seq, prev, count = self._head
        events = self.log._insert_rows(c, prepared, seq, prev)
        self._head = (events[-1].seq, events[-1].hash, count + len(events))
        return events

    def flush(self) -> None:
        """Move the head and commit; nothing to do when no transaction is open."""
        if self._c is None:
            return
        c, t = self._c, self._t
        self._c = self._t = None
        try:
            seq, digest, count = self._head
            if seq != self._seq0:
                log = self.log
                moved = c.exec_driver_sql(log._move_head.sql, log._move_head.args(
                    {"old_seq": self._seq0, "new_seq": seq, "new_hash": digest, "new_count": count,
                     "new_sig": log.head_sig(seq, digest, count)}))
                if moved.rowcount != 1:  # pragma: no cover - the head is locked by this transaction
                    raise AuditError("the audit head moved under a locked transaction", code="audit_unavailable")
            t.commit()
            self.commits += 1
            if self.log._wal_file is not None:
                _checkpointer.touch(self.log._wal_file)
        except BaseException:
            if t.is_active:
                t.rollback()
            raise

    def settle(self) -> None:
        """After a failure in the unit's body: commit what was written if the database still can
        (else it is rolled back); never raises over the body's error."""
        with suppress(Exception):  # the body's error is the one raised
            self.flush()


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
