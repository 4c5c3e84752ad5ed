"""Test support for the governed path on the Brightwater example workspace (the repository root).

`workspace()` loads the workspace once per test process; `engine()` wraps it in an `Engine`
with a model double, an `LLMConfig` and a state database of the test's own. `answer()` and
`escalation()` spell the two answers the model may give. The cases below were worked out
against the shipped graph (knowledge_graph/data/brightwater.ttl):

- SO-3002: bronze customer, confirmed, margin 22.67 %, total 89,719.82; 7 % is decided by
  no rule (bronze stops at 5 %, the volume rule needs 100,000), so it goes to the model.
- SO-3219: cancelled (an `approve_discount` on it violates the action's precondition).
- SO-3053: the customer is over its credit limit (guard `crm.guard.credit` denies).
- SO-3014: total above 250,000 (guard `crm.guard.big_order` sends to review).
- INV-10007: a rule approves it, but its status violates the precondition of `approve_invoice`.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

from engine.api import Engine
from engine.llm.config import LLMConfig
from engine.workspace import Workspace, load_workspace

ROOT = Path(__file__).parent.parent
BWD = "https://brightwater.example/id/"
AS_OF = "2026-11-01"


@functools.lru_cache(maxsize=1)
def workspace() -> Workspace:
    """The Brightwater workspace with its graph, loaded once per test process."""
    ws = load_workspace(ROOT)
    assert not ws.errors, ws.errors
    return ws


def llm_config(**kw: Any) -> LLMConfig:
    """A config for tests: no back-off sleeps, everything else as configured by `kw`."""
    base: dict[str, Any] = {"model": "scripted", "mode": "live", "backoff_s": 0.0, "retries": 2, "timeout_s": 5.0}
    base.update(kw)
    return LLMConfig(**base)


def engine(model: Any = None, *, state: str | Path | None = None, ws: Workspace | None = None,
           now: Any = None, matcher: str = "durable", **llm: Any) -> Engine:
    """An engine over the shared workspace with `model` as its LLM; `llm` sets `LLMConfig` fields."""
    ids = itertools.count(1)
    if state is None:  # a database of its own: an in-memory SQLite is per connection, hence per thread
        state = Path(tempfile.mkdtemp(prefix="rulebridge-bw-")) / "state.db"
    url = f"sqlite:///{state}" if isinstance(state, Path) else state
    return Engine(ws or workspace(), clock=lambda: dt.date(2026, 11, 1), new_id=lambda: f"dec-{next(ids)}",
                  model=model, llm=llm_config(**llm), state=url, now=now, matcher=matcher)


def discount_case(order: str = "bwd:SO-3002", percent: float = 7, *, agent: str = "sales-assistant",
                  requested_by: str = "bwd:EMP-037", **extra: Any) -> dict[str, Any]:
    return {"type": "discount.requested", "payload": {"order": order, "percent": percent,
                                                      "requested_by": requested_by},
            "as_of": AS_OF, "agent": agent, **extra}


def answer(action: str = "approve_discount", params: dict[str, Any] | None = None, *, confidence: float = 0.95,
           rationale: str = "bronze customer, healthy margin", facts: list[str] | None = None,
           **extra: Any) -> str:
    """A `propose` answer as the model would write it."""
    body = {"decision": "propose", "action": action,
            "params": {"order": "bwd:SO-3002", "percent": 7} if params is None else params,
            "rationale": rationale, "confidence": confidence,
            "facts_relied_on": facts if facts is not None else ["case.order.customer.tier"], **extra}
    return json.dumps(body)


def escalation(reason: str = "the policy does not cover this") -> str:
    return json.dumps({"decision": "escalate", "reason": reason})
