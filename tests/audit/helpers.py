"""Shared builders for the audit tests: a deterministic clock and ids, realistic decision events."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

START = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
KEY = b"audit-test-key-0123456789abcdef!"


def clock(step_ms: int = 1, start: dt.datetime = START) -> Callable[[], dt.datetime]:
    """A clock that moves `step_ms` forward at every reading."""
    ticks = itertools.count()
    return lambda: start + dt.timedelta(milliseconds=step_ms * next(ticks))


def ids(prefix: str = "E-") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):08d}"


def decision(i: int, *, outcome: str = "execute", source: str = "rule", rule: str | None = "ap.approve.small",
             ruleset: str = "accounts_payable.invoice_approval", agent: str = "ap-assistant"
             ) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The events one decision appends, shaped like `engine.audit.trail.decision_events`."""
    did = f"D-{i:05d}"
    return [
        (did, "received", agent, {"case": {"type": "invoice.received", "payload": {"invoice": f"bwd:INV-{i}",
                                                                                  "amount": 100 + i}},
                                  "ruleset": ruleset, "rule_revision": f"{ruleset}@abc", "graph_revision": "g1",
                                  "as_of": "2026-11-01", "matcher": "durable"}),
        (did, "facts", agent, {"facts": {"case.invoice.amount": 100 + i, "vendor.status": "approved"},
                               "provenance": [{"s": f"bwd:INV-{i}", "p": "bw:amount", "o": str(100 + i), "g": ""}],
                               "queries": []}),
        (did, "matched", agent, {"rules_matched": [rule] if rule else [], "rules_deciding": [rule] if rule else [],
                                 "hit_policy": "priority"}),
        (did, "decided", agent, {"outcome": outcome, "source": source, "reason": source, "message": "",
                                 "rule": rule, "rules": [rule] if rule else [], "ruleset": ruleset,
                                 "proposals": [], "review_id": None}),
    ]
