"""The verification gate: one `verify` for every proposal, whoever made it.

Checks, in order, and all of them (so a verdict names every reason, not only the first):
the action exists; the agent may take it; the parameters fit the action's schema (strict
types, ranges, enums, IRIs of the right graph class); the action's preconditions hold;
the ruleset's guards (`deny` always wins; a guard that errors denies); the agent's limits;
for an LLM proposal, its confidence. The verdict is `Accept`, `Deny` or `Review`, and the
pipeline handles each of them explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from engine.act.catalog import Catalog, ParamContext, ValidationError, format_errors
from engine.govern.agents import Agent
from engine.kg.resolver import Reads, resolve_params
from engine.lang.compiler import CompiledRuleset
from engine.lang.conditions import ParamCondition, params_type
from engine.lang.payload import validate_payload
from engine.lang.semantics import truth
from engine.proposals import Proposal


@dataclass(frozen=True)
class Reason:
    """Why a check failed: a stable code, what failed (guard or limit id), a message for people."""

    code: str  # unknown_action | scope | schema | precondition | guard_deny | guard_review | guard_error | limit | low_confidence
    message: str
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "id": self.id, "message": self.message}


@dataclass(frozen=True)
class Accept:
    proposal: Proposal  # with normalised parameters


@dataclass(frozen=True)
class Deny:
    reasons: tuple[Reason, ...]
    also: tuple[Reason, ...] = ()  # review reasons that the denial overrides (kept for the record)


@dataclass(frozen=True)
class Review:
    reasons: tuple[Reason, ...]
    proposal: Proposal | None = None  # with normalised parameters: what a reviewer approves


Verdict = Union[Accept, Deny, Review]


@dataclass
class Gate:
    """What the gate needs from the workspace; built once, shared by every case."""

    catalog: Catalog
    preconditions: dict[str, list[ParamCondition]]
    precondition_plan: dict[str, Any]
    agents_plan: dict[str, Any]
    param_ctx: ParamContext
    prefixes: dict[str, str]
    confidence_threshold: float = 0.8


def _conditions(conds: list[ParamCondition], env: dict[str, Any], code: str, what: str) -> list[Reason]:
    out = []
    for c in conds:
        try:
            ok = truth(c.fn(env)) is True
        except Exception as exc:  # fail closed
            out.append(Reason(code, f"{what} `{c.text}` could not be evaluated: {exc}", c.text))
            continue
        if not ok:
            out.append(Reason(code, c.message, c.text))
    return out


def verify(proposal: Proposal, *, gate: Gate, rs: CompiledRuleset, env: dict[str, Any], agent: Agent,
           reads: Reads | None = None) -> Verdict:
    """Verify one proposal against the case's facts (`env`) for `agent`. Never raises."""
    from engine.kg.derived import GRAPH_KEY

    spec = gate.catalog.specs.get(proposal.action)
    if spec is None:
        return Deny((Reason("unknown_action", f"`{proposal.action}` is not an action of this workspace"),))
    denies: list[Reason] = []
    reviews: list[Reason] = []
    if not agent.may_take(proposal.action):
        denies.append(Reason("scope", f"agent `{agent.id}` may not take action `{proposal.action}`"))
    try:
        params = gate.catalog.validate(proposal.action, proposal.params, gate.param_ctx)
    except ValidationError as exc:
        denies.extend(Reason("schema", line) for line in format_errors(exc))
        return Deny(tuple(denies))
    except Exception as exc:  # a validator that cannot run (graph down): fail closed
        return Deny(tuple(denies) + (Reason("schema", f"parameters could not be validated: {exc}"),))
    normalised = Proposal(proposal.action, params, proposal.source, proposal.rule, proposal.rationale,
                          proposal.confidence, proposal.facts_relied_on)
    values, problems = validate_payload(params_type(spec), params, gate.prefixes, where="params")
    if problems:  # cannot happen after the schema check; fail closed if it does
        return Deny(tuple(denies) + tuple(Reason("schema", p.message) for p in problems))
    graph = env.get(GRAPH_KEY)
    if graph is not None:
        values = resolve_params(values, [rs.plan.get("params", {}), gate.precondition_plan, gate.agents_plan],
                                graph, reads if reads is not None else Reads())
    genv = dict(env)
    genv["action"] = proposal.action
    genv["params"] = values
    denies += _conditions(gate.preconditions.get(proposal.action, []), genv, "precondition", "precondition")
    for g in rs.guards:
        if g.applies_to and proposal.action not in g.applies_to:
            continue
        try:
            hit = truth(g.fn(genv))
        except Exception as exc:  # a guard that cannot be evaluated denies
            denies.append(Reason("guard_error", f"guard error: {exc}", g.id))
            continue
        if hit is not False:  # true, or unknown (a value is missing): fail closed
            msg = g.message if hit else f"{g.message} (could not be ruled out: a value is missing)"
            (denies if g.kind == "deny" else reviews).append(Reason(f"guard_{g.kind}", msg, g.id))
    reviews += _conditions(agent.limits(proposal.action), genv, "limit", "limit")
    if proposal.source == "llm" and (proposal.confidence is None or proposal.confidence < gate.confidence_threshold):
        reviews.append(Reason("low_confidence", f"model confidence {proposal.confidence} is below the threshold "
                                                f"{gate.confidence_threshold}"))
    if denies:
        return Deny(tuple(denies), tuple(reviews))
    if reviews:
        return Review(tuple(reviews), normalised)
    return Accept(normalised)
