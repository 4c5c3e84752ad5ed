"""Where the engine keeps its state: one SQLAlchemy URL for the review queue, agent keys,
execution ledger and audit log — SQLite in the workspace by default, PostgreSQL by URL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

from sqlalchemy import MetaData, Table, create_engine, event
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential


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


def open_db(url: str) -> SAEngine:
    """An SQLAlchemy engine; SQLite gets WAL and a busy timeout, and its folder is created."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(url, future=True, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):
        @event.listens_for(eng, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    if tracked is not None:
        tracked.append(eng)
    return eng


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


class SharedStore:
    """A store (`self.db`) that can join the units of work of an audit log on the same database.

    After `share(log)`, while `log.unit()` is open in the calling thread, the store's writes join
    the unit's transaction (committed with the audit events appended meanwhile, at the unit's
    `flush`) and its reads join it while it is open; outside a unit, every call is its own
    transaction, as before."""

    db: SAEngine
    _shared: Any = None

    def share(self, log: Any) -> None:
        """Join the units of work of `log` (an `engine.audit.log.AuditLog` on this store's database)."""
        if log.db.dialect.name != self.db.dialect.name:
            raise ValueError("a store joins only the units of an audit log on the same database")
        self._shared = log

    def _unit(self) -> Any:
        return self._shared.current_unit() if self._shared is not None else None

    def _tx(self) -> Any:
        """A write transaction: this thread's unit of work (committed by it), or one of our own."""
        u = self._unit()
        return _Joined(u.conn()) if u is not None else self.db.begin()

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
    SQLite connection (`engine.audit.log._Rows`)."""

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
        """Run on `c`: a SQLAlchemy connection, or a unit's SQLite one (`engine.audit.log._DriverConnection`)."""
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
