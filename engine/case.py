"""A case and the values every stage shares: IRIs and entities resolved from the graph, provenance."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any


class IRI(str):
    """An IRI value read from the graph (as opposed to a string literal)."""

    __slots__ = ()


class Entity:
    """A graph node as the rules see it: its IRI and the properties the plan resolved.

    `props` maps a property's local name to the list of its values (literals as Python
    values, other nodes as `Entity`). Only planned properties are present.
    """

    __slots__ = ("iri", "props")

    def __init__(self, iri: str):
        self.iri = iri
        self.props: dict[str, list[Any]] = {}

    def __repr__(self) -> str:
        return f"<{self.iri}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entity) and other.iri == self.iri

    def __hash__(self) -> int:
        return hash(self.iri)


@dataclass(frozen=True)
class Provenance:
    """One triple read from the graph: where a fact came from."""

    subject: str
    predicate: str
    object: str
    graph: str = ""

    def to_json(self) -> dict[str, str]:
        return {"s": self.subject, "p": self.predicate, "o": self.object, "g": self.graph}


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_CASE_DEPTH = 32  # objects and lists nest at most this deep in a case (an audit event: 64)
MAX_INT_BITS = 1024  # an integer past ±2**1024 is beyond every number a case may hold (a float's)


def _values_problem(value: Any) -> str | None:
    """Why a case's values cannot be decided on (None: they can): nested too deeply for every
    stage to walk, or an integer no stage can even print. Iterative: any depth is safe to check."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            items: Any = v.values()
        elif isinstance(v, list):
            items = v
        else:
            if type(v) is int and v.bit_length() > MAX_INT_BITS:
                return "holds an integer beyond ±1.8e+308, the largest number a case may hold"
            continue
        if depth > MAX_CASE_DEPTH:
            return f"is nested more than {MAX_CASE_DEPTH} levels deep"
        stack.extend((x, depth + 1) for x in items)
    return None


def as_of_date(value: Any) -> dt.date | None:
    """The date of an `as_of` value (`2026-01-31`, or an ISO date-time), None when it is not one."""
    if type(value) is not str or not _ISO_DATE.fullmatch(value[:10]):
        return None
    try:
        if len(value) > 10:
            return dt.datetime.fromisoformat(value).date()
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


# The default of `[security] max_case_bytes`. A case is recorded whole in its `received` audit event
# (and its values again in `facts`), which holds at most 4 MiB (`engine.audit.log.MAX_DATA_BYTES`):
# a case must be refused well before its events are, not after its review item was written.
MAX_CASE_BYTES = 256 * 1024
MAX_CASE_BYTES_LIMIT = 1024 * 1024  # the highest `max_case_bytes` allowed: a quarter of an event


def check_case_size(case: Case, limit: int) -> None:
    """Refuse a case whose JSON (UTF-8) is larger than `limit` bytes: `CaseError(case_too_large)`."""
    import json

    size = len(json.dumps(case.to_json(), ensure_ascii=False, separators=(",", ":"), default=str)
               .encode("utf-8", "surrogatepass"))
    if size > limit:
        from engine.errors import CaseError, Diagnostic

        raise CaseError([Diagnostic("case_too_large", f"the case is {size} bytes; at most {limit} are accepted",
                                    help="send references (ids, IRIs) rather than documents; the limit is "
                                         "`[security] max_case_bytes` in rulebridge.toml")])


@dataclass
class Case:
    """One request for a decision: a case type, its payload and who asks."""

    type: str
    payload: dict[str, Any]
    id: str | None = None
    agent: str = "anonymous"
    as_of: str | None = None  # ISO date the rules see as `today()`; the engine clock when absent
    # what emitted the case when a correlation did (`Engine.observe`): recorded in its `received`
    # event; never read from a client's JSON
    cause: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # INVARIANT: a Case's `as_of` is absent or an ISO date, so every stage may read it as one.
        if self.as_of not in (None, "") and as_of_date(self.as_of) is None:
            from engine.errors import CaseError, shown_value

            raise CaseError("`as_of`: must be a date like 2026-01-31, got "
                            f"{shown_value(self.as_of)}", code="case_invalid")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        from engine.errors import CaseError, shown

        if not isinstance(data, dict):
            raise CaseError("a case must be a JSON object with `type` and `payload`")
        unknown = sorted(set(data) - {"type", "payload", "id", "agent", "as_of"}, key=str)
        if unknown:
            keys = ", ".join(f"`{shown(str(k))}`" for k in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise CaseError(f"unknown case key(s): {keys}{more}; put business fields under "
                            "`payload`")
        if not isinstance(data.get("type"), str):
            raise CaseError("the case has no `type` (for example `invoice.received`)")
        payload = data.get("payload", {})
        if not isinstance(payload, dict):
            raise CaseError("`payload` must be a JSON object")
        for key in ("agent", "id"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise CaseError(f"`{key}` must be text, not {type(data[key]).__name__}", code="case_invalid")
        problem = _values_problem(payload)
        if problem is not None:
            raise CaseError(f"`payload` {problem}", code="case_invalid")
        return cls(type=data["type"], payload=payload, id=data.get("id"),
                   agent=data.get("agent", "anonymous"), as_of=data.get("as_of"))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "payload": self.payload}
        if self.id:
            d["id"] = self.id
        if self.agent != "anonymous":
            d["agent"] = self.agent
        if self.as_of:
            d["as_of"] = self.as_of
        return d


@dataclass
class Facts:
    """What the rules saw: the resolved document, path values and the triples read."""

    doc: dict[str, Any]
    provenance: list[Provenance] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
