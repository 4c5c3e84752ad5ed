"""The SQL connector: an action is one or more parameterised statements in one transaction.

A binding names the statements; the action's parameters are bind parameters (`:invoice`),
bound by SQLAlchemy (`text()`), never spliced into the SQL:

    execute:
      connector: erp
      sql: >-
        UPDATE invoices SET status = 'approved', approved_by = :approver
        WHERE iri = :invoice AND status IN ('received', 'on_hold')
      max_matches: 1      # optional (default 1): rows each statement may change

The statements run in one transaction together with a marker row in `rulebridge_executions`
(key, action, at) in the target database, so `status(key)` is exact. The marker goes first:
it takes the write lock at once (SQLite) and makes a concurrent attempt with the same key wait
on the primary key, then find the key done. A statement that changes no row (the invoice is
no longer open) or more than `max_matches` rows rolls everything back.

Faults: SQLite `database is locked`/busy, PostgreSQL serialization failures, deadlocks, lock
and statement timeouts, lost or refused connections → `TransientError`; integrity and
constraint violations, bad SQL, bad data → `PermanentError`.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, create_engine, insert, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.sql.elements import TextClause

from engine.errors import DiagnosticSink, suggest_help
from engine.lang.actions import ActionCatalog, ActionSpec, ExecBinding
from engine.lang.source import LStr, span_of

from .base import ConnectorError, ExecutionStatus, PermanentError, TransientError
from .values import checked_params

KEYS = ("sql", "max_matches")

metadata = MetaData()
executions = Table(
    "rulebridge_executions", metadata,
    Column("key", String(200), primary_key=True),
    Column("action", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# PostgreSQL SQLSTATEs worth a retry: the transaction lost a race or the server was busy or away.
_PG_TRANSIENT_CLASSES = ("08", "53", "57")  # connection exception, insufficient resources, operator intervention
_PG_TRANSIENT = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy", "disk i/o error")


@dataclass(frozen=True)
class SqlTemplate:
    """One action's statements (bind parameters by name) and how many rows each may change."""

    statements: tuple[TextClause, ...]
    binds: tuple[tuple[str, ...], ...]
    max_matches: int


def statements_of(template: dict[str, Any]) -> list[str]:
    raw = template.get("sql")
    return [str(s) for s in (raw if isinstance(raw, list) else [raw])]


def bind_names(statement: str) -> list[str]:
    """The bind parameters of a statement, as SQLAlchemy's `text()` reads them: every `:name`, even
    inside quotes (`\\:` is a literal colon); a PostgreSQL `::cast` is not one."""
    return list(text(statement).compile().binds)


def compose(template: dict[str, Any]) -> SqlTemplate:
    stmts = statements_of(template)
    return SqlTemplate(tuple(text(s) for s in stmts), tuple(tuple(bind_names(s)) for s in stmts),
                       int(template.get("max_matches", 1)))


def classify(exc: Exception, what: str) -> ConnectorError:
    """A database error as a transient or permanent connector fault."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    raw = str(orig if orig is not None else exc).strip()
    msg = raw.splitlines()[0][:300] if raw else type(exc).__name__
    if isinstance(exc, sa_exc.IntegrityError):
        return PermanentError(f"{what}: a constraint refused the change: {msg}", code="connector_constraint")
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection in time
        return TransientError(f"{what}: no database connection available: {msg}", code="connector_unavailable")
    if state:
        if state in _PG_TRANSIENT or state[:2] in _PG_TRANSIENT_CLASSES:
            return TransientError(f"{what}: {msg} (SQLSTATE {state})", code="connector_busy")
        return PermanentError(f"{what}: {msg} (SQLSTATE {state})", code="connector_sql_error")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return TransientError(f"{what}: the database connection was lost: {msg}", code="connector_unavailable")
    if any(s in msg.lower() for s in _SQLITE_TRANSIENT):
        return TransientError(f"{what}: {msg}", code="connector_busy")
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) and not isinstance(orig, _sqlite_error()):
        # a server that refused or dropped the connection (no SQLSTATE: it never answered)
        return TransientError(f"{what}: the database is unreachable: {msg}", code="connector_unavailable")
    return PermanentError(f"{what}: {msg}", code="connector_sql_error")


def _sqlite_error() -> type:
    import sqlite3

    return sqlite3.Error


class _NoEffect(Exception):
    """Raised inside the transaction to roll it back; turned into a PermanentError outside."""

    def __init__(self, error: PermanentError):
        self.error = error


class _Duplicate(Exception):
    """The marker row of this key exists: the execution took effect before."""


class SqlConnector:
    """Actions as parameterised SQL statements, each execution with its marker row."""

    kind = "sql"

    def __init__(self, name: str, actions: ActionCatalog, *, url: str, timeout: float = 5.0,
                 engine: SAEngine | None = None, clock: Callable[[], dt.datetime] | None = None):
        self.name = name
        self.url = url
        self.timeout = float(timeout)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.db = engine or create_engine(url, future=True, pool_pre_ping=True, connect_args=self._connect_args(url))
        self.specs: dict[str, ActionSpec] = {}
        self.templates: dict[str, SqlTemplate] = {}
        for spec in actions.actions.values():
            if spec.execute is not None and spec.execute.connector == name:
                self.specs[spec.name] = spec
                self.templates[spec.name] = compose(spec.execute.template)
        self._ready = False
        self._ready_lock = threading.Lock()  # two threads must not both create the marker table

    def _connect_args(self, url: str) -> dict[str, Any]:
        if url.startswith("sqlite"):
            return {"timeout": self.timeout}  # how long to wait on another writer's lock
        if url.startswith("postgresql"):
            return {"connect_timeout": max(1, round(self.timeout))}
        return {}

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                try:
                    metadata.create_all(self.db, checkfirst=True)
                except sa_exc.SQLAlchemyError as exc:
                    raise classify(exc, f"connector `{self.name}`") from exc
                self._ready = True

    def _limit_waits(self, conn: Any) -> None:
        if self.db.dialect.name == "postgresql":
            ms = int(self.timeout * 1000)  # from the configuration, never from case data
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {3 * ms}")  # a lock wait shows as one

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Run the action's statements and its marker row in one transaction."""
        template = self.templates.get(action)
        if template is None:
            raise PermanentError(f"action `{action}` is not bound to connector `{self.name}`",
                                 code="connector_unbound")
        values = checked_params(self.specs[action], params)
        what = f"action `{action}` on `{self.name}`"
        self._ensure_table()
        rows: list[int] = []
        try:
            with self.db.begin() as conn:
                self._limit_waits(conn)
                try:
                    conn.execute(insert(executions).values({"key": key, "action": action, "at": self.clock()}))
                except sa_exc.IntegrityError as exc:
                    raise _Duplicate() from exc
                for stmt, names in zip(template.statements, template.binds, strict=True):
                    n = conn.execute(stmt, {k: values.get(k) for k in names}).rowcount
                    rows.append(n)
                    if n == 0:
                        raise _NoEffect(PermanentError(f"{what}: statement {len(rows)} changed no row: nothing was "
                                                       "changed", code="connector_no_effect"))
                    if n > template.max_matches:
                        raise _NoEffect(PermanentError(f"{what}: statement {len(rows)} would change {n} rows "
                                                       f"(at most {template.max_matches}): nothing was changed",
                                                       code="connector_ambiguous"))
        except _NoEffect as stop:
            raise stop.error from None
        except _Duplicate:
            return {"rows": [], "duplicate": True}
        except sa_exc.SQLAlchemyError as exc:
            raise classify(exc, what) from exc
        return {"rows": rows, "duplicate": False}

    def status(self, key: str) -> ExecutionStatus:
        """Exact: the marker row is committed with the change, or not at all."""
        self._ensure_table()
        try:
            with self.db.connect() as conn:
                found = conn.execute(select(executions.c["key"]).where(executions.c["key"] == key)).first()
        except sa_exc.SQLAlchemyError as exc:
            raise classify(exc, f"status of `{key}` on `{self.name}`") from exc
        return "done" if found is not None else "not_done"

    def close(self) -> None:
        """Close the connection pool."""
        self.db.dispose()


# -- load-time checks of a binding ----------------------------------------------------------------

def check_binding(spec: ActionSpec, binding: ExecBinding, sink: DiagnosticSink) -> None:
    """A SQL binding: `sql` is a statement or a list of them; every `:name` is a parameter of the action."""
    t, where = binding.template, binding.span
    binding.check_keys(spec.name, KEYS, sink, help="a SQL binding has `sql` and `max_matches`")
    raw = t.get("sql")
    items = raw if isinstance(raw, list) else [raw]
    if not raw or not all(isinstance(s, str) and s.strip() for s in items):
        sink.error("schema", f"the SQL binding of `{spec.name}` needs `sql`: a statement or a list of statements",
                   span_of(raw, binding.key_span("sql")))
        return
    binding.max_matches(spec.name, sink)
    for stmt in [s for s in items if isinstance(s, str)]:  # all of them (checked above)
        try:
            names = bind_names(stmt)
        except Exception as exc:  # noqa: BLE001 — whatever the SQL compiler says is the diagnostic
            sink.error("schema", f"the SQL of `{spec.name}` cannot be read: {exc}", span_of(stmt, where))
            continue
        for name in names:
            if name in spec.params:
                continue
            m = re.search(rf"(?<![:\w]):{re.escape(name)}\b", stmt)
            at = span_of(stmt, binding.key_span("sql"))
            if m is not None and isinstance(stmt, LStr) and stmt.span is not None:
                at = stmt.span_at(m.start(), len(name) + 1)
            help_, sug = suggest_help(name, spec.params, f"parameters of `{spec.name}`")
            if sug is None:
                help_ = (help_ or "") + "; a literal colon in the SQL text is written `\\:`"
            sink.error("unknown_name", f"unknown template parameter `:{name}` in the SQL of `{spec.name}`", at,
                       help=help_, suggestion=sug)


__all__ = ["SqlConnector", "SqlTemplate", "check_binding", "classify", "executions"]
