"""A decision: what one case came to, with everything needed to explain, audit and replay it.

`Decision` is the wire and audit shape (DecisionV1); `Outcome` and `Source` are the closed sets
its outcome and source come from (string enums: they compare equal to their values).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.canonical import proposal_hash
from engine.case import Case
from engine.govern.verify import Reason
from engine.kg.resolver import Reads
from engine.lang.compiler import CompiledRuleset
from engine.lang.semantics import get_path, to_json_value
from engine.proposals import Proposal


class Outcome(StrEnum):
    """What a decision comes to; a deny or an escalation is a normal result, not an error."""

    EXECUTE = "execute"  # the accepted proposals may run
    DENY = "deny"
    ESCALATE = "escalate"  # a person decides (the review queue)
    NO_ACTION = "no_action"


class Source(StrEnum):
    """Who decided: a rule, the model, a person (a reviewer), an external agent, or nobody."""

    RULE = "rule"
    LLM = "llm"
    HUMAN = "human"
    AGENT = "agent"
    NONE = "none"


OUTCOMES = tuple(o.value for o in Outcome)


@dataclass
class GuardResult:
    """A guard that fired against a proposal (`deny` or `review`), or failed to evaluate."""

    id: str
    kind: str
    message: str
    action: str | None = None


@dataclass
class Decision:
    """The outcome of one case, with everything needed to explain and replay it (DecisionV1)."""

    id: str
    case: Case
    ruleset: str
    outcome: Outcome
    source: Source
    reason: str  # a stable code: rule | llm | no_rule_matched | unique_conflict | guard_deny | guard_review | ...
    message: str
    proposals: list[Proposal]
    matched: list[str]
    deciding: list[str]
    guards: list[GuardResult]
    rule_revision: str
    graph_revision: str
    as_of: str
    env: dict[str, Any] = field(repr=False, default_factory=dict)
    reads: Reads | None = field(repr=False, default=None)
    timings_us: dict[str, float] = field(default_factory=dict)
    matcher: str = "durable"
    checks: list[Reason] = field(default_factory=list)  # every reason the verification gate gave
    llm: dict[str, Any] | None = None  # the LLM's part: model, attempts, repairs (None: not asked)
    review_id: str | None = None  # the review item an escalation is waiting in
    agent: str = "anonymous"
    execution: dict[str, Any] | None = None  # how the accepted actions ran (`decide(..., execute=True)`)

    def facts(self, rs: CompiledRuleset) -> dict[str, Any]:
        """The value of every scalar path and derived fact the rules read."""
        return facts_of(rs, self.env)

    def to_json(self, rs: CompiledRuleset | None = None, *, provenance: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": "DecisionV1",
            "id": self.id,
            "case": self.case.to_json(),
            "ruleset": self.ruleset,
            "outcome": self.outcome._value_,  # `_value_`: the plain text, without the enum descriptor's call
            "source": self.source._value_,
            "reason": self.reason,
            "message": self.message,
            "proposals": [p.to_json() for p in self.proposals],
            "rules_matched": self.matched,
            "rules_deciding": self.deciding,
            "guards": [g.__dict__ for g in self.guards],
            "checks": [c.to_json() for c in self.checks],
            "agent": self.agent,
            "llm": self.llm,
            "review_id": self.review_id,
            "execution": self.execution,
            "rule_revision": self.rule_revision,
            "graph_revision": self.graph_revision,
            "as_of": self.as_of,
            "matcher": self.matcher,
        }
        if rs is not None:
            d["facts"] = self.facts(rs)
        if provenance and self.reads is not None:
            d["provenance"] = [p.to_json() for p in self.reads.provenance()]
            d["queries"] = to_json_value(self.reads.queries)
        return d


def facts_of(rs: CompiledRuleset, env: dict[str, Any]) -> dict[str, Any]:
    """The value of every scalar path and derived fact the rules read."""
    out: dict[str, Any] = {}
    for path in rs.network:
        kinds = rs.network_info[path][0]
        root = env.get(path[0])
        out[".".join(path)] = to_json_value(get_path(root, path[1:], kinds) if len(path) > 1 else root)
    for d in rs.derived:
        out[d.name] = to_json_value(env.get(d.name))
    return out


def case_key(rs_name: str, case: Case) -> str:
    """Identifies a request across runs, for the review queue's one pending item per case: the
    ruleset and a hash of who asks and everything asked (agent, id, type, payload, as_of).

    INVARIANT: two requests share a pending review item only when all of these are equal. A key
    of the `id` alone let another agent's case (or another payload under a reused id) land in an
    item already pending, and its own escalation was never seen."""
    body = json.dumps({"agent": case.agent, "id": case.id, "type": case.type, "payload": case.payload,
                       "as_of": case.as_of}, sort_keys=True, separators=(",", ":"), default=str)
    return f"{rs_name}:sha256:{hashlib.sha256(body.encode()).hexdigest()[:32]}"


def review_item(d: Decision, rs: CompiledRuleset) -> dict[str, Any]:
    """The review item of an escalated decision: the arguments of `ReviewQueue.enqueue`."""
    prop = d.proposals[0] if d.proposals else None
    return {"case_key": case_key(rs.name, d.case), "decision_id": d.id, "ruleset": rs.name,
            "case_type": d.case.type, "agent": d.agent, "reason": d.reason, "message": d.message,
            "proposal": prop.to_json() if prop else None,
            "proposal_hash": proposal_hash(prop.action, prop.params) if prop else None,
            "context": d.to_json(rs)}


__all__ = ["OUTCOMES", "Decision", "GuardResult", "Outcome", "Source", "case_key", "facts_of",
           "review_item"]
