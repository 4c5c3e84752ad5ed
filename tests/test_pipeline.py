"""The pipeline as a table of stages over typed ports (`engine/pipeline.py`).

The flow is driven here without `Engine`: `Deciding` built from the workspace, and an in-memory
implementation of `engine.ports.Ports`, to show that the stages decide from their arguments and
write only through the ports they are given.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from engine.case import Case
from engine.errors import AuthError
from engine.match import make_matcher
from engine.pipeline import DECIDE, Deciding, Outcome, Source, decide, govern
from tests.brightwater import AS_OF, discount_case, workspace


def deciding() -> Deciding:
    ws = workspace()
    matchers: dict[str, Any] = {}
    ids = itertools.count(1)

    def matcher_for(rs: Any) -> Any:
        return matchers.setdefault(rs.name, make_matcher(rs, "reference"))

    return Deciding.of(ws, matcher_for=matcher_for, clock=lambda: dt.date(2026, 11, 1),
                       new_id=lambda: f"d-{next(ids)}")


class MemoryPorts:
    """Every write the flow makes, kept in lists: an implementation of `engine.ports.Ports`."""

    one_database = False

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.records: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.refusals: list[str] = []

    # the stores
    @property
    def audit(self) -> MemoryPorts:
        return self

    @property
    def decisions(self) -> MemoryPorts:
        return self

    @property
    def queue(self) -> MemoryPorts:
        return self

    @property
    def executor(self) -> Any:
        raise AssertionError("nothing executes in these tests")

    def append(self, decision_id: str, step: str, agent: str, data: dict[str, Any]) -> None:
        self.events.append((decision_id, step))

    def append_many(self, items: list[Any]) -> None:
        self.events += [(i[0], i[1]) for i in items]

    def current_unit(self) -> None:
        return None

    def record(self, **kw: Any) -> None:
        self.records.append(kw)

    def enqueue(self, **kw: Any) -> Any:
        self.items.append(kw)
        return type("Item", (), {"id": kw["item_id"]})()

    # units, identities
    @contextmanager
    def _unit(self) -> Iterator[None]:
        yield

    def units(self, *, review: bool, execute: bool) -> Any:
        return type("Units", (), {"unit": lambda _self: self._unit()})()

    def identities_if_used(self) -> None:
        return None

    def authenticate(self, key: str | None, kind: str = "agent") -> str | None:
        return None

    def audit_refusal(self, decision_id: str, who: str, exc: Exception, **context: Any) -> None:
        self.refusals.append(getattr(exc, "code", ""))


def test_a_decision_is_timed_stage_by_stage_from_the_table():
    d = decide(deciding(), Case.from_json(discount_case("bwd:SO-3005", 3, agent="ops-console")))
    assert list(d.timings_us) == [s.name for s in DECIDE] == [
        "authenticate", "resolve", "match", "consequence", "fallback", "verify"]
    assert all(t >= 0 for t in d.timings_us.values())
    assert isinstance(d.outcome, Outcome) and isinstance(d.source, Source)
    assert d.to_json()["outcome"] == "execute" and type(d.to_json()["outcome"]) is str


def test_govern_writes_only_through_the_ports_it_is_given():
    ports = MemoryPorts()
    d = govern(deciding(), ports, Case.from_json(discount_case("bwd:SO-3005", 3, agent="ops-console")))
    assert d.outcome == Outcome.EXECUTE and d.source == Source.RULE
    assert [s for _id, s in ports.events] == ["received", "facts", "matched", "verified", "decided"]
    assert [r["id"] for r in ports.records] == [d.id] and ports.items == []
    # an escalation: its review item, and the same events
    esc = govern(deciding(), ports, Case.from_json(discount_case(agent="ops-console")), llm=False)
    assert esc.outcome == Outcome.ESCALATE and [i["decision_id"] for i in ports.items] == [esc.id]
    assert esc.review_id == ports.items[0]["item_id"]
    assert [s for i, s in ports.events if i == esc.id][-1] == "decided"


def test_a_refusal_stops_the_flow_and_is_audited_through_the_ports():
    ports = MemoryPorts()
    case = Case.from_json({"type": "discount.requested", "agent": "nobody", "as_of": AS_OF,
                           "payload": {"order": "bwd:SO-3005", "percent": 3, "requested_by": "bwd:EMP-037"}})
    with pytest.raises(AuthError):
        govern(deciding(), ports, case)
    assert ports.refusals == ["agent_unknown"] and ports.events == [] and ports.records == []
