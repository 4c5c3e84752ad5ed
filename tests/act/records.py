"""Small real systems of record for the executor's tests and the crash suite (plain sqlite3, light to import).

`SqliteRecord` keeps accounts and a journal of changes in one SQLite file. An action changes a
balance and appends a journal row carrying the idempotency key, in ONE transaction — so
`status(key)` is exact (the journal row is the marker). It deliberately does NOT refuse a second
execution of a key (no unique index on the journal): exactly-once must come from the ledger and
the executor, and a doubled execution shows up as two journal rows with one key.

Actions: `debit` / `credit` {account, amount} change a balance; `notify` {to} only journals (an
e-mail cannot be unsent). Any action with `fail: "permanent"` or `fail: "transient"` raises before
touching anything. `BlindRecord` is the same system behind an API that cannot look a key up:
its `status` is always `"unknown"`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from engine.act.connectors.base import PermanentError, TransientError

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (account TEXT PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, action TEXT NOT NULL, params TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS journal_key ON journal (key);
"""


class SqliteRecord:
    """A system of record in one SQLite file; the change and its key marker commit together."""

    def __init__(self, path: str | Path, *, name: str = "erp", after_commit: Callable[[str, str], None] | None = None):
        self.name = name
        self.path = str(path)
        self.after_commit = after_commit  # a hook for the crash suite: (action, key) once the change is durable
        self.calls = 0
        with closing(self._connect()) as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        self.calls += 1
        fail = params.get("fail")
        if fail == "permanent":
            raise PermanentError(f"`{action}` refused by {self.name}", code="connector_permanent")
        if fail == "transient":
            raise TransientError(f"{self.name} timed out", code="connector_transient")
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            if action in ("debit", "credit"):
                delta = -params["amount"] if action == "debit" else params["amount"]
                db.execute("INSERT INTO accounts (account, balance) VALUES (?, 0) ON CONFLICT DO NOTHING",
                           (params["account"],))
                db.execute("UPDATE accounts SET balance = balance + ? WHERE account = ?", (delta, params["account"]))
            elif action != "notify":
                db.execute("ROLLBACK")
                raise PermanentError(f"{self.name} has no action `{action}`", code="connector_permanent")
            cur = db.execute("INSERT INTO journal (key, action, params) VALUES (?, ?, ?)",
                             (key, action, json.dumps(params, sort_keys=True)))
            journal_id = cur.lastrowid
            db.execute("COMMIT")
        finally:
            db.close()
        if self.after_commit is not None:
            self.after_commit(action, key)
        return {"journal_id": journal_id}

    def status(self, key: str) -> str:
        with closing(self._connect()) as db:
            row = db.execute("SELECT 1 FROM journal WHERE key = ? LIMIT 1", (key,)).fetchone()
        return "done" if row else "not_done"

    # -- what the tests read -----------------------------------------------------------------------

    def times(self, key: str) -> int:
        """How many times the change under `key` took effect."""
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM journal WHERE key = ?", (key,)).fetchone()[0]

    def journal(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every change: (key, action, params), in order."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT key, action, params FROM journal ORDER BY id").fetchall()
        return [(k, a, json.loads(p)) for k, a, p in rows]

    def balance(self, account: str) -> int:
        with closing(self._connect()) as db:
            row = db.execute("SELECT balance FROM accounts WHERE account = ?", (account,)).fetchone()
        return row[0] if row else 0


class BlindRecord(SqliteRecord):
    """The same system behind an API that cannot tell whether a key took effect."""

    def status(self, key: str) -> str:
        return "unknown"


class FailingRecord(SqliteRecord):
    """A system that fails on demand: `fail_next` exceptions are raised by the next calls, in order."""

    def __init__(self, path: str | Path, *, name: str = "flaky", **kw: Any):
        super().__init__(path, name=name, **kw)
        self.fail_next: list[BaseException] = []
        self.status_answer: str | None = None  # overrides `status` when set

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        if self.fail_next:
            self.calls += 1
            raise self.fail_next.pop(0)
        return super().execute(action, params, key=key)

    def status(self, key: str) -> str:
        return self.status_answer if self.status_answer is not None else super().status(key)
