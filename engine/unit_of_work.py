"""A unit of work: one transaction on a state database, shared by its stores, for one thread.

Between two `flush`es, everything the stores of one `engine.storage.Database` write (decision
store, review queue, ledger) and every audit event appended commits in ONE transaction,
atomically: a state change and its audit event are never apart. The transaction begins
lazily, at the first write, as a writer's: SQLite `BEGIN IMMEDIATE` (the database's write
lock); the participants (`engine.storage.Participant`: the audit log) then lock what they keep
(PostgreSQL: `SELECT ... FOR UPDATE` of the audit head row), so writers in other threads and
processes still serialise and extend one chain; the head moves once, at the commit. Reads by the
stores join the transaction while it is open (they see its writes) and use their own
connections otherwise (they never begin one).

`flush` commits (what must be durable before something outside the database happens: a
connector call); leaving the unit commits what is open. When the body fails, what it had
written is committed as far as the database still accepts it (each write is a complete state
change, as when every store committed on its own) and the error is raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from engine.storage import StorageError

if TYPE_CHECKING:
    import sqlite3

    from engine.storage import Database


class DriverRows:
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


class DriverConnection:
    """A SQLite connection whose `exec_driver_sql` goes straight to the driver's connection —
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
        assert isinstance(raw, sqlite3.Connection)  # INVARIANT: made only for a SQLite connection
        self.raw = raw
        self._errors = sqlite3.Error

    def exec_driver_sql(self, sql: str, params: Any = ()) -> DriverRows:
        from sqlalchemy.exc import DBAPIError

        try:
            if type(params) is list:
                return DriverRows(self.raw.executemany(sql, params))
            return DriverRows(self.raw.execute(sql, params))
        except self._errors as exc:
            raise DBAPIError.instance(sql, params, exc, self._errors, dialect=self.sa.dialect) from exc

    def execute(self, *a: Any, **kw: Any) -> Any:
        return self.sa.execute(*a, **kw)

    def begin_nested(self) -> Any:
        return self.sa.begin_nested()

    @property
    def dialect(self) -> Any:
        return self.sa.dialect


def fast(sa: Connection) -> Any:
    """`sa`, or on SQLite the same connection with `exec_driver_sql` on the driver (`DriverConnection`)."""
    return DriverConnection(sa) if sa.dialect.name == "sqlite" else sa


class Unit:
    """One transaction on a database, shared by its stores and its participants, for one thread
    (see the module's docstring). Made by `Database.unit()`."""

    def __init__(self, database: Database):
        self.database = database
        self.state: dict[Any, Any] = {}  # each participant's own state for the open transaction
        self._conn: Connection | None = None  # checked out for the unit's life, returned by `close`
        self._fast: Any = None
        self._c: Any = None  # set while a transaction is open: the connection the stores write through
        self._t: Any = None
        self.commits = 0

    @property
    def open(self) -> bool:
        """Whether a transaction is open (something was written since the last commit)."""
        return self._c is not None

    @property
    def dialect(self) -> str:
        return self.database.dialect

    def conn(self) -> Any:
        """The open transaction's connection (a SQLAlchemy `Connection`; on SQLite one whose
        `exec_driver_sql` runs on the driver, see `DriverConnection`); begins a transaction (and
        the participants take their locks) if none is open."""
        c = self._c
        if c is None:
            c = self._begin()
        return c

    def savepoint(self, c: Any) -> AbstractContextManager[Any]:
        """Around a statement whose failure (a duplicate key) the caller handles: PostgreSQL aborts
        the whole transaction on an error, unless it happened inside a savepoint; SQLite undoes
        only the failed statement."""
        return c.begin_nested() if self.dialect == "postgresql" else nullcontext()

    def _try_begin(self) -> tuple[Any, Any]:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.database.writer.connect()
            self._fast = fast(self._conn)
        c = self._fast
        try:
            t = self._conn.begin()
            for p in self.database.participants:
                p.unit_begun(self, c)
        except OperationalError:
            self.close()
            raise
        except BaseException:
            with suppress(Exception):
                t.rollback()
            self.close()
            raise
        return c, t

    def _begin(self) -> Any:
        try:
            try:
                c, t = self._try_begin()
            except OperationalError:  # `database is locked` past the busy timeout, a dropped connection
                c, t = Retrying(stop=stop_after_attempt(7), reraise=True,
                                wait=wait_random_exponential(multiplier=0.005, max=0.5),
                                retry=retry_if_exception_type(OperationalError))(self._try_begin)
        except OperationalError as exc:
            raise StorageError(f"the state database could not be locked: {str(exc).splitlines()[0][:200]}",
                               code="state_unavailable") from exc
        self._c, self._t = c, t
        return c

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Writes that commit together or not at all, inside the unit: when the block fails, what
        it wrote (store rows and events) is rolled back to a savepoint taken at its start, and
        the error is raised; what the unit wrote before the block stays. A `flush` inside the
        block commits what the block wrote so far (it is then no longer undone)."""
        c = self.conn()  # the transaction (and the participants' locks) the block's writes join
        t, state = self._t, dict(self.state)
        sp = c.begin_nested()
        try:
            yield
        except BaseException:
            if self._t is t:  # still the transaction the savepoint belongs to
                try:
                    sp.rollback()
                    self.state = state
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

    def flush(self) -> None:
        """Let the participants move what they keep, and commit; nothing to do when no
        transaction is open."""
        if self._c is None:
            return
        c, t = self._c, self._t
        self._c = self._t = None
        try:
            for p in self.database.participants:
                p.unit_committing(self, c)
            t.commit()
            self.commits += 1
            self.database.committed()
        except BaseException:
            if t.is_active:
                t.rollback()
            raise
        finally:
            self.state = {}

    def settle(self) -> None:
        """After a failure in the unit's body: commit what was written if the database still can
        (else it is rolled back); never raises over the body's error."""
        with suppress(Exception):  # the body's error is the one raised
            self.flush()


__all__ = ["DriverConnection", "DriverRows", "Unit", "fast"]
