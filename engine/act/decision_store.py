"""Decisions kept for execution: what `rulebridge execute DECISION` finds, in the state database.

A decision is recorded when it is made (`record`), with the case, the agent, and the exact
proposals the gate accepted. Executing it later re-verifies those proposals against the graph
as it is then; the execution ledger (`engine.act.ledger`) is what makes the run exactly-once,
this table only says which decision asked for what and how it ended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, bindparam, insert, select, update

from engine.errors import RulebridgeError, shown
from engine.storage import Compiled, Database, Store, ensure_tables, row_reader

metadata = MetaData()
decisions = Table(
    "decisions", metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("ruleset", String(200), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("case", JSON, nullable=False),
    Column("proposals", JSON, nullable=False),
    Column("status", String(24), nullable=False),  # decided | executed | failed | refused | needs_review
    Column("result", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=True),
)


_COLS = [c.name for c in decisions.columns]


class DecisionNotFound(RulebridgeError):
    code = "decision_not_found"


@dataclass
class StoredDecision:
    id: str
    created_at: dt.datetime
    agent: str
    ruleset: str
    outcome: str
    source: str
    case: dict[str, Any]
    proposals: list[dict[str, Any]]
    status: str
    result: dict[str, Any] | None
    updated_at: dt.datetime | None


class DecisionStore(Store):
    """The decisions table (its writes join the units of work of its database, `engine.storage.Store`)."""

    def __init__(self, target: Database | str, *, clock: Callable[[], dt.datetime] | None = None):
        self._open(target)
        ensure_tables(metadata, self.db)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        d = self.db.dialect  # statements compiled once (see `engine.storage.Compiled`)
        self._insert = Compiled(insert(decisions).values({k: bindparam(f"v_{k}") for k in _COLS}), d)
        self._get = Compiled(select(decisions).where(decisions.c.id == bindparam("w_id")), d)
        self._finish = Compiled(update(decisions).where(decisions.c.id == bindparam("w_id")).values(
            {k: bindparam(f"v_{k}") for k in ("status", "result", "updated_at")}), d)
        self._read = row_reader(decisions, d, StoredDecision, (_COLS.index("created_at"), _COLS.index("updated_at")))

    def record(self, *, id: str, agent: str, ruleset: str, outcome: str, source: str, case: dict[str, Any],
               proposals: list[dict[str, Any]]) -> None:
        with self._tx() as conn:
            self._insert.run(conn, {"v_id": id, "v_created_at": self.clock(), "v_agent": agent, "v_ruleset": ruleset,
                                    "v_outcome": outcome, "v_source": source, "v_case": case,
                                    "v_proposals": proposals, "v_status": "decided", "v_result": None,
                                    "v_updated_at": None})

    def get(self, decision_id: str) -> StoredDecision:
        with self._rx() as conn:
            r = self._get.run(conn, {"w_id": decision_id}).first()
        if r is None:
            raise DecisionNotFound(f"no decision `{shown(decision_id)}` in this workspace's state "
                                   "database")
        return self._read(r)

    def finish(self, decision_id: str, status: str, result: dict[str, Any]) -> None:
        with self._tx() as conn:
            self._finish.run(conn, {"w_id": decision_id, "v_status": status, "v_result": result,
                                    "v_updated_at": self.clock()})


assert _COLS == list(StoredDecision.__dataclass_fields__), "StoredDecision follows the table's columns"
