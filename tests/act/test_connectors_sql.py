"""The SQL connector (`engine/act/connectors/sql.py`) against a small ERP schema.

Runs on a real SQLite file and a real PostgreSQL schema (`sql_url`). After every refused or
failed execution the target tables are read back: nothing half-written, no marker row.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from engine.act.connectors.base import PermanentError, TransientError
from engine.act.connectors.registry import build_connectors
from engine.act.connectors.resilience import Resilient
from engine.act.connectors.sql import SqlConnector
from engine.errors import DiagnosticSink
from engine.lang.actions import load_actions
from tests.brightwater import workspace

BWD = "https://brightwater.example/id/"
INV1, INV2, INV3, EMP = BWD + "INV-1", BWD + "INV-2", BWD + "INV-3", BWD + "EMP-1"

ACTIONS = """
actions:
  approve_invoice:
    description: Approve an invoice in the ERP.
    params: {invoice: Invoice, approver: Employee, note: {type: string, required: false}}
    execute:
      connector: erp
      sql: >-
        UPDATE invoices SET status = 'approved', approved_by = :approver, note = :note
        WHERE iri = :invoice AND status IN ('received', 'on_hold')
  release_payment:
    description: Pay an approved invoice.
    params: {invoice: Invoice, amount: number, method: string}
    execute:
      connector: erp
      sql:
        - UPDATE invoices SET status = 'paid' WHERE iri = :invoice AND status = 'approved'
        - INSERT INTO payments (invoice, amount, method) VALUES (:invoice, :amount, :method)
  reopen_all:
    description: A binding that would change every approved invoice.
    params: {invoice: Invoice}
    execute:
      connector: erp
      sql: UPDATE invoices SET status = 'received' WHERE status = 'approved' OR iri = :invoice
  archive_invoice:
    description: A binding whose table does not exist.
    params: {invoice: Invoice}
    execute: {connector: erp, sql: "UPDATE archived_invoices SET status = 'x' WHERE iri = :invoice"}
"""

SCHEMA = [
    ("CREATE TABLE invoices (iri VARCHAR(200) PRIMARY KEY, status VARCHAR(20) NOT NULL, "
     "approved_by VARCHAR(200), note TEXT, amount NUMERIC(12, 2) NOT NULL)"),
    ("CREATE TABLE payments (invoice VARCHAR(200) NOT NULL UNIQUE REFERENCES invoices (iri), "
     "amount NUMERIC(12, 2) NOT NULL CHECK (amount > 0), method VARCHAR(10) NOT NULL)"),
    (f"INSERT INTO invoices (iri, status, amount) VALUES ('{INV1}', 'received', 420.00), "
     f"('{INV2}', 'approved', 99.50), ('{INV3}', 'approved', 10.00)"),
]


@pytest.fixture(scope="module")
def actions(tmp_path_factory):
    f = tmp_path_factory.mktemp("sql") / "actions.yaml"
    f.write_text(ACTIONS, encoding="utf-8")
    sink = DiagnosticSink()
    catalog = load_actions(f, workspace().schema, sink)
    assert not sink.errors, sink.errors
    return catalog


@pytest.fixture
def erp(sql_url):
    """The target database: the ERP schema with three invoices; yields (url, a reader)."""
    db = create_engine(sql_url)
    with db.begin() as conn:
        for stmt in SCHEMA:
            conn.execute(text(stmt))
    yield sql_url, db
    db.dispose()


@pytest.fixture
def conn_factory(actions):
    made: list[SqlConnector] = []

    def make(url: str, *, warm: bool = True, **kw) -> SqlConnector:
        c = SqlConnector("erp", actions, url=url, **kw)
        made.append(c)
        if warm:  # its first call creates the marker table (the snapshots read it)
            assert c.status("no-such-key") == "not_done"
        return c

    yield make
    for c in made:
        c.close()


def rows(db, sql: str) -> list[tuple]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def snapshot(db) -> dict[str, list[tuple]]:
    out = {t: rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("invoices", "payments")}
    out["markers"] = rows(db, "SELECT key, action FROM rulebridge_executions ORDER BY key")
    return out


def test_statements_and_marker_commit_together(erp, conn_factory):
    url, db = erp
    c = conn_factory(url)
    result = c.execute("approve_invoice", {"invoice": INV1, "approver": EMP, "note": "ok"}, key="k1")
    assert result == {"rows": [1], "duplicate": False}
    assert rows(db, f"SELECT status, approved_by, note FROM invoices WHERE iri = '{INV1}'") == [("approved", EMP, "ok")]
    assert rows(db, "SELECT key, action FROM rulebridge_executions") == [("k1", "approve_invoice")]
    assert c.status("k1") == "done" and c.status("k2") == "not_done"


def test_an_optional_parameter_left_out_is_bound_as_null(erp, conn_factory):
    url, db = erp
    conn_factory(url).execute("approve_invoice", {"invoice": INV1, "approver": EMP}, key="k1")
    assert rows(db, f"SELECT note FROM invoices WHERE iri = '{INV1}'") == [(None,)]


def test_a_repeated_key_changes_nothing(erp, conn_factory):
    url, db = erp
    c = conn_factory(url)
    c.execute("release_payment", {"invoice": INV2, "amount": 99.5, "method": "ach"}, key="pay")
    before = snapshot(db)
    assert c.execute("release_payment", {"invoice": INV2, "amount": 99.5, "method": "ach"}, key="pay") == \
        {"rows": [], "duplicate": True}
    assert snapshot(db) == before
    assert len(before["payments"]) == 1


def test_a_statement_that_changes_no_row_rolls_back_everything(erp, conn_factory):
    url, db = erp
    c = conn_factory(url)
    before = snapshot(db)
    with pytest.raises(PermanentError) as info:
        c.execute("approve_invoice", {"invoice": INV2, "approver": EMP}, key="k1")  # already approved
    assert info.value.code == "connector_no_effect"
    assert snapshot(db) == before and c.status("k1") == "not_done"


def test_a_constraint_violation_in_a_later_statement_leaves_nothing_half_written(erp, conn_factory):
    url, db = erp
    c = conn_factory(url)
    before = snapshot(db)
    with pytest.raises(PermanentError) as info:  # statement 1 marks it paid; statement 2 violates CHECK
        c.execute("release_payment", {"invoice": INV2, "amount": 0, "method": "ach"}, key="k1")
    assert info.value.code == "connector_constraint"
    assert snapshot(db) == before
    assert rows(db, f"SELECT status FROM invoices WHERE iri = '{INV2}'") == [("approved",)]
    assert c.status("k1") == "not_done"


def test_a_statement_that_would_change_too_many_rows_rolls_back(erp, conn_factory):
    url, db = erp
    c = conn_factory(url)
    before = snapshot(db)
    with pytest.raises(PermanentError) as info:
        c.execute("reopen_all", {"invoice": INV1}, key="k1")
    assert info.value.code == "connector_ambiguous"
    assert snapshot(db) == before


def test_a_missing_table_is_permanent(erp, conn_factory):
    url, _db = erp
    c = conn_factory(url)
    with pytest.raises(PermanentError) as info:
        c.execute("archive_invoice", {"invoice": INV1}, key="k1")
    assert info.value.code == "connector_sql_error"
    assert c.status("k1") == "not_done"


def test_an_injection_attempt_is_bound_as_a_value(erp, conn_factory):
    url, db = erp
    note = "x'; DROP TABLE payments; UPDATE invoices SET status = 'paid' WHERE 'a' = 'a"
    conn_factory(url).execute("approve_invoice", {"invoice": INV1, "approver": EMP, "note": note}, key="k1")
    assert rows(db, f"SELECT note FROM invoices WHERE iri = '{INV1}'") == [(note,)]
    assert rows(db, "SELECT status FROM invoices ORDER BY iri") == [("approved",), ("approved",), ("approved",)]
    assert rows(db, "SELECT COUNT(*) FROM payments") == [(0,)]


def test_bad_parameters_are_refused_before_the_database(erp, conn_factory):
    url, db = erp
    c = conn_factory(url)
    before = snapshot(db)
    for params in ({"invoice": INV1}, {"invoice": "not an iri", "approver": EMP},
                   {"invoice": INV1, "approver": EMP, "extra": 1}):
        with pytest.raises(PermanentError) as info:
            c.execute("approve_invoice", params, key="k1")
        assert info.value.code == "connector_bad_params"
    assert snapshot(db) == before


# -- transient faults ------------------------------------------------------------------------------

def test_database_locked_is_transient_and_retried_until_the_lock_is_gone(tmp_path, actions, conn_factory):
    url = f"sqlite:///{tmp_path}/erp.db"
    db = create_engine(url)
    with db.begin() as conn:
        for stmt in SCHEMA:
            conn.execute(text(stmt))
    db.dispose()
    raw = conn_factory(url, timeout=0.05)  # the marker table is created before the lock is taken
    holder = sqlite3.connect(tmp_path / "erp.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with pytest.raises(TransientError) as info:
            raw.execute("approve_invoice", {"invoice": INV1, "approver": EMP}, key="k1")
        assert info.value.code == "connector_busy"
        release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        release.start()
        resilient = Resilient(raw, retries=20, backoff=0.05, max_backoff=0.1, breaker_failures=50)
        t0 = time.monotonic()
        assert resilient.execute("approve_invoice", {"invoice": INV1, "approver": EMP}, key="k1")["duplicate"] is False
        release.join()
        assert resilient.attempts >= 2 and time.monotonic() - t0 >= 0.25
    finally:
        holder.close()
    check = sqlite3.connect(tmp_path / "erp.db")
    try:
        assert check.execute("SELECT status FROM invoices WHERE iri = ?", (INV1,)).fetchall() == [("approved",)]
        assert check.execute("SELECT key FROM rulebridge_executions").fetchall() == [("k1",)]
    finally:
        check.close()


def test_postgresql_lock_timeout_is_transient_and_writes_nothing(erp, conn_factory):
    url, db = erp
    if not url.startswith("postgresql"):
        pytest.skip("row locks with a lock timeout: PostgreSQL")
    c = conn_factory(url, timeout=0.2)
    with db.connect() as holder:
        holder.execute(text("SELECT * FROM invoices WHERE iri = :i FOR UPDATE"), {"i": INV1})
        with pytest.raises(TransientError) as info:
            c.execute("approve_invoice", {"invoice": INV1, "approver": EMP}, key="k1")
        assert info.value.code == "connector_busy" and "55P03" in str(info.value)
        holder.rollback()
    assert c.status("k1") == "not_done"
    assert rows(db, f"SELECT status FROM invoices WHERE iri = '{INV1}'") == [("received",)]


def test_a_refused_connection_is_transient(actions, conn_factory, unused_port):
    c = conn_factory(f"postgresql+psycopg://nobody:nothing@127.0.0.1:{unused_port}/erp", timeout=1, warm=False)
    with pytest.raises(TransientError) as info:
        c.execute("approve_invoice", {"invoice": INV1, "approver": EMP}, key="k1")
    assert info.value.code == "connector_unavailable"
    with pytest.raises(TransientError) as info:
        c.status("k1")
    assert info.value.code == "connector_unavailable"


@pytest.fixture
def unused_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connecting is refused
    return port


def test_built_from_the_workspace_configuration(erp, actions):
    from engine.kg.store import OxigraphStore

    url, db = erp
    conns = build_connectors({"connectors": {"erp": {"kind": "sql", "url": url, "timeout": 2, "retries": 1}}},
                             OxigraphStore.from_files([]), actions)
    try:
        assert set(conns) == {"erp", "kg"}  # the graph is always there
        assert isinstance(conns["erp"], Resilient) and conns["erp"].retries == 1
        conns["erp"].execute("approve_invoice", {"invoice": INV1, "approver": EMP}, key="k1")
        assert conns["erp"].status("k1") == "done"
        assert rows(db, f"SELECT status FROM invoices WHERE iri = '{INV1}'") == [("approved",)]
    finally:
        conns["erp"].close()
