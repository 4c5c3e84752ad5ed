"""Where the engine keeps its state: one SQLAlchemy URL for the decisions, review queue, agent
keys, execution ledger and audit log — SQLite in the workspace by default, PostgreSQL by URL.

One set-up for every store (`open_db`, `Database`), one helper for statements compiled once
(`Compiled`, `row_reader`), and the base of the stores (`Store`), whose writes join the
database's unit of work (`engine.unit_of_work.Unit`) when one is open in the calling thread."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from sqlalchemy import MetaData, Table, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from engine.errors import RulebridgeError

if TYPE_CHECKING:
    from engine.unit_of_work import Unit


@overload
def utc(v: dt.datetime) -> dt.datetime: ...
@overload
def utc(v: None) -> None: ...
@overload
def utc(v: dt.datetime | None) -> dt.datetime | None: ...
def utc(v: dt.datetime | None) -> dt.datetime | None:
    """A datetime with its zone (SQLite drops it; the engine stores UTC)."""
    if v is None:
        return None
    return v if v.tzinfo else v.replace(tzinfo=dt.UTC)


def default_url(root: Path) -> str:
    """The embedded default: `.rulebridge/state.db` in the workspace."""
    return f"sqlite:///{(root / '.rulebridge' / 'state.db').as_posix()}"


# When a list, every engine `open_db` makes is appended, so its owner (a test using a server
# database) can close their pools before dropping the database.
tracked: list[SAEngine] | None = None


def state_url(root: Path, config: Any, override: str | None = None) -> str:
    """The workspace's state database: `override`, else `[storage] url` (which `RULEBRIDGE_STATE_URL`
    overrides, `engine.config`), else the embedded default (`default_url`)."""
    return (override or str(config.section("storage").get("url") or "")
            or default_url(root))


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for an in-memory database)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


def is_memory(url: str) -> bool:
    """An in-memory SQLite URL: a new, empty database for every connection pool that opens it."""
    return is_sqlite(url) and (url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite:///:memory:")
                               or ":memory:" in url or "mode=memory" in url)


class StorageError(RulebridgeError):
    """The state database cannot be used; `code` is stable (state_unavailable, state_invalid)."""

    code = "state_unavailable"


# SQLite checkpoints (copies the WAL into the database file) inside the commit that takes the WAL
# past `wal_autocheckpoint` pages (default 1,000): that one commit pays milliseconds — the governed
# path's p99. Writers keep a high threshold as a safety net and a background thread checkpoints
# instead, shortly after commits (`_Checkpointer`).
AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_AFTER_S = 0.5


class _Checkpointer:
    """One daemon thread per process: a PASSIVE checkpoint of each SQLite file a unit of work or
    the audit log committed to, at most `CHECKPOINT_AFTER_S` after the commit (one for a burst).

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
        self._closed: set[str] = set()  # files whose database was closed since they were taken for a pass
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def forget(self, path: str) -> None:
        """The database on `path` was closed: no checkpoint of it any more (one running is waited
        for), so the files can be removed without a late pass opening the database again."""
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


checkpointer = _Checkpointer()
SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


def open_db(url: str, *, synchronous: str = "NORMAL") -> SAEngine:
    """An SQLAlchemy engine: the one set-up of every store of the engine (state, ledger, review
    queue, identities, audit log). SQLite gets WAL, a busy timeout, explicit transactions and its
    folder created.

    SQLite: the driver's own implicit BEGIN is switched off so that each transaction starts with
    the BEGIN we choose — `BEGIN IMMEDIATE` for writers (execution option `write`, see
    `Database.writer`), which takes the write lock before anything is read, plain `BEGIN` (a
    snapshot) for readers. `synchronous=NORMAL` (the default) survives a crash of the process but
    may lose the last commits on an OS crash or power cut — atomically, a unit's rows and events
    together, so the audit chain stays valid and the loss is NOT visible to `verify`. `FULL`
    fsyncs the WAL at every commit so a committed event survives a power cut, at the cost of one
    fsync per commit. See benchmarks/audit_append.py."""
    sync = synchronous.upper()
    if sync not in SYNCHRONOUS:
        raise StorageError(f"synchronous must be FULL, NORMAL or EXTRA, not `{synchronous}`", code="state_invalid")
    if not is_sqlite(url):
        eng = create_engine(url, future=True)
    else:
        file = sqlite_file(url)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, future=True, connect_args={"timeout": 30, "isolation_level": None})

        @event.listens_for(eng, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            if file is not None:  # checkpoints in the background (`_Checkpointer`); this is the safety net
                cur.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn: Connection) -> None:
            # Straight to the driver: this runs once per transaction, on every write path.
            # (a `begin` event always has its driver connection)
            conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    if tracked is not None:
        tracked.append(eng)
    return eng


class Participant(Protocol):
    """A store whose own bookkeeping moves once per transaction of a unit of work: the audit log,
    whose head row is locked when the unit's transaction begins and moved just before it commits."""

    def unit_begun(self, unit: Unit, c: Any) -> None:
        """The unit's transaction began on `c` (keep per-unit state in `unit.state[self]`)."""

    def unit_committing(self, unit: Unit, c: Any) -> None:
        """The unit's transaction is about to commit on `c`."""


class Database:
    """One state database: its connection pool, and the units of work of its stores.

    Every store of one database (decision store, review queue, ledger, identities, audit log) is
    made on the same `Database`: one pool, one set-up (`open_db`), and one unit of work per thread
    that their writes join (`unit`). The audit log takes part in each unit (`Participant`): its
    head row is locked when the unit's transaction begins and moved once before it commits, so a
    state change and its audit events commit together, in one chain."""

    def __init__(self, url: str, *, synchronous: str = "NORMAL"):
        self.url = url
        self.engine = open_db(url, synchronous=synchronous)
        self.synchronous = synchronous.upper()
        self.dialect = self.engine.dialect.name
        self.writer = self.engine.execution_options(write=True)  # SQLite: BEGIN IMMEDIATE
        file = sqlite_file(url) if is_sqlite(url) else None
        self.wal_file = str(file.resolve()) if file is not None else None  # checkpointed after commits
        self.participants: list[Participant] = []
        self._tls = threading.local()  # the unit of work open in each thread (`unit`)

    def join(self, participant: Participant) -> None:
        """`participant` takes part in every unit of work begun from now on."""
        if participant not in self.participants:
            self.participants.append(participant)

    def committed(self) -> None:
        """A transaction committed: checkpoint the SQLite file soon."""
        if self.wal_file is not None:
            checkpointer.touch(self.wal_file)

    def close(self) -> None:
        """Release the connections (and stop checkpointing the file: it may be removed now)."""
        if self.wal_file:
            checkpointer.forget(self.wal_file)
        self.engine.dispose()

    # -- units of work --------------------------------------------------------------------------
    def unit(self) -> AbstractContextManager[Unit]:
        """A unit of work on this database for the current thread (see `engine.unit_of_work.Unit`);
        nested calls join the unit already open. Leaving it commits what is still open."""
        return self._unit_scope()

    @contextmanager
    def _unit_scope(self) -> Iterator[Unit]:
        u: Unit | None = getattr(self._tls, "unit", None)
        if u is not None:
            yield u
            return
        from engine.unit_of_work import Unit

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
        u = self.current_unit()
        if u is not None:
            u.flush()


def database(target: Database | str, **kw: Any) -> tuple[Database, bool]:
    """`target` as a `Database`, and whether the caller owns it (made here from a URL: the caller
    closes it)."""
    if isinstance(target, Database):
        return target, False
    return Database(target, **kw), True


def ensure_tables(metadata: MetaData, db: SAEngine) -> None:
    """Create what is missing of `metadata`'s tables and indexes.

    Several workers starting at once against a new PostgreSQL database race to create the same
    tables (`CREATE TABLE` is not `IF NOT EXISTS` there: the loser fails on the catalog's unique
    index; SQLite reports `database is locked`). The loser retries and finds them made."""
    def create() -> None:
        metadata.create_all(db, checkfirst=True)
        for table in metadata.sorted_tables:  # an index added to a table made by an older release
            for index in table.indexes:
                index.create(db, checkfirst=True)

    Retrying(stop=stop_after_attempt(6), wait=wait_random_exponential(multiplier=0.02, max=0.5), reraise=True,
             retry=retry_if_exception_type((IntegrityError, ProgrammingError, OperationalError)))(create)


class _Joined:
    """The open transaction of a unit of work, entered like `db.begin()` but committed by the unit."""

    __slots__ = ("c",)

    def __init__(self, c: Any):
        self.c = c

    def __enter__(self) -> Any:
        return self.c

    def __exit__(self, *exc: Any) -> None:
        return None


class Store:
    """A store on a `Database` (given, or opened from a URL and then owned and closed here).

    While a unit of work of its database is open in the calling thread, the store's writes join
    the unit's transaction (committed with everything else written in the unit, at its `flush`)
    and its reads join it while it is open; outside a unit, every call is its own transaction."""

    database: Database
    db: SAEngine  # the database's engine, for Core statements and `ensure_tables`
    _owned: bool = False

    def _open(self, target: Database | str) -> None:
        self.database, self._owned = database(target)
        self.db = self.database.engine

    def close(self) -> None:
        """Release the connection pool when this store opened it (a shared `Database` is closed by its owner)."""
        if self._owned:
            self.database.close()

    def _unit(self) -> Unit | None:
        return self.database.current_unit()

    def _tx(self) -> Any:
        """A write transaction: this thread's unit of work (committed by it), or one of our own
        (SQLite: `BEGIN IMMEDIATE`, so a read-then-write never fails to upgrade its lock)."""
        u = self._unit()
        return _Joined(u.conn()) if u is not None else self.database.writer.begin()

    def _rx(self) -> Any:
        """A connection to read from: the unit's open transaction (its writes are visible), or our own."""
        u = self._unit()
        return _Joined(u.conn()) if u is not None and u.open else self.db.connect()

    def _savepoint(self, c: Any) -> Any:
        """Around an insert whose duplicate-key error the caller handles (see `Unit.savepoint`)."""
        u = self._unit()
        return u.savepoint(c) if u is not None else nullcontext()


T = TypeVar("T")


class Rows(Protocol):
    """What `Compiled.run` returns: SQLAlchemy's cursor result, or the driver's rows on a unit's
    SQLite connection (`engine.unit_of_work.DriverRows`)."""

    @property
    def rowcount(self) -> int: ...
    def first(self) -> Any: ...
    def all(self) -> Sequence[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Compiled:
    """A Core statement compiled once for the engine's dialect, run with `exec_driver_sql`.

    Each call of the ledger (and of the decision store and the review queue on their hot paths)
    runs one or two small statements; SQLAlchemy's per-execution work (building the statement,
    cache key, coercions) cost many times SQLite's own work. The SQL is still
    generated by SQLAlchemy from the table definitions for the engine's dialect (bind casts and
    all), and runs through the same connection, transaction and error handling (IntegrityError,
    OperationalError); the bind values go through the same type processors SQLAlchemy would apply
    (JSON, Boolean, DateTime on SQLite). Every bind parameter is named and must be given."""

    def __init__(self, stmt: Any, dialect: Any):
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        procs = []
        for bp, name in compiled.bind_names.items():
            proc = bp.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                procs.append((name, proc))
        self.procs = procs
        self.defaults = dict(compiled.params)  # the values written into the statement (status="failed", ...)

    def args(self, values: dict[str, Any]) -> Any:
        merged = {**self.defaults, **values}
        for name, proc in self.procs:
            merged[name] = proc(merged[name])
        return tuple(merged[k] for k in self.order) if self.order is not None else merged

    def run(self, c: Any, values: dict[str, Any]) -> Rows:
        """Run on `c`: a SQLAlchemy connection, or a unit's SQLite one (`engine.unit_of_work.DriverConnection`)."""
        rows: Rows = c.exec_driver_sql(self.sql, self.args(values))
        return rows


def row_reader(table: Table, dialect: Any, make: Callable[..., T], times: tuple[int, ...]) -> Callable[[Any], T]:
    """Rows of `select(table)` (raw driver tuples) → records, through the types' result processors."""
    procs = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in table.columns]
    idx = [(i, p) for i, p in enumerate(procs) if p is not None]

    def read(row: Any) -> T:
        v = list(row)
        for i, p in idx:
            v[i] = p(v[i])
        for i in times:
            t = v[i]
            if t is not None and t.tzinfo is None:
                v[i] = t.replace(tzinfo=dt.UTC)
        return make(*v)
    return read
