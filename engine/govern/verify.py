"""The verification gate: one `verify` for every proposal, whoever made it.

Checks, in order, and all of them (so a verdict names every reason, not only the first):
the action exists; the agent may take it; the parameters fit the action's schema (strict
types, ranges, enums, IRIs of the right graph class); the entities the action changes (its
targets) are the case's own — or, where the action or ruleset allows others (`any`), the
checks below run on the facts of each entity it names, resolved as the rules would resolve
them for a case about that entity; the action's preconditions hold; the ruleset's guards
(`deny` always wins; a guard that errors denies); the agent's limits; for an LLM proposal,
its confidence. The verdict is `Accept`, `Deny` or `Review`, and the pipeline handles each of
them explicitly.

INVARIANT: guards, preconditions and limits are evaluated on the facts of the entities the
action will change, never only on those of the case that was asked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from engine.case import Entity
from engine.govern.agents import Agent
from engine.kg.resolver import Reads, resolve_params
from engine.lang.action_models import ParamContext, ValidationError, format_errors
from engine.lang.actions import ActionCatalog
from engine.lang.compiler import CompiledRuleset
from engine.lang.conditions import ParamCondition, params_type
from engine.lang.payload import validate_payload
from engine.lang.semantics import TODAY, truth
from engine.lang.targets import TargetBinding, bind_targets
from engine.proposals import Proposal

MAX_TARGET_CASES = 16  # entity combinations one proposal may be checked on (`any` targets, lists)


@dataclass(frozen=True)
class Reason:
    """Why a check failed: a stable code, what failed (guard or limit id), a message for people."""

    # unknown_action | scope | schema | precondition | guard_deny | guard_review | guard_error | limit
    # | low_confidence
    code: str
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


Verdict = Accept | Deny | Review


@dataclass
class Gate:
    """What the gate needs from the workspace; built once, shared by every case."""

    catalog: ActionCatalog
    preconditions: dict[str, list[ParamCondition]]
    precondition_plan: dict[str, Any]
    agents_plan: dict[str, Any]
    param_ctx: ParamContext
    prefixes: dict[str, str]
    confidence_threshold: float = 0.8
    schema: Any = None  # engine.lang.types.Schema: how targets bind to case fields
    _bindings: dict[tuple[str, str], list[TargetBinding]] = field(default_factory=dict, repr=False)

    def targets(self, rs: CompiledRuleset, action: str) -> list[TargetBinding]:
        """How the targets of `action` bind to the case fields of `rs` (computed once per pair)."""
        key = (rs.name + "@" + rs.version, action)
        found = self._bindings.get(key)
        if found is None:
            spec = self.catalog.actions[action]
            found = self._bindings[key] = bind_targets(spec, rs.case_schema, self.schema, rs.targets.get(action))
        return found


def _conditions(conds: list[ParamCondition], env: dict[str, Any], code: str, what: str) -> list[Reason]:
    out = []
    for c in conds:
        try:
            ok = truth(c.fn(env)) is True
        except Exception as exc:  # noqa: BLE001 - fail closed
            out.append(Reason(code, f"{what} `{c.text}` could not be evaluated: {exc}", c.text))
            continue
        if not ok:
            out.append(Reason(code, c.message, c.text))
    return out


def verify(proposal: Proposal, *, gate: Gate, rs: CompiledRuleset, env: dict[str, Any], agent: Agent,
           reads: Reads | None = None) -> Verdict:
    """Verify one proposal against the case's facts (`env`) for `agent`. Never raises."""
    from engine.kg.derived import GRAPH_KEY

    spec = gate.catalog.actions.get(proposal.action)
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
    except Exception as exc:  # noqa: BLE001 - a validator that cannot run (graph down): fail closed
        return Deny(tuple(denies) + (Reason("schema", f"parameters could not be validated: {exc}"),))
    normalised = Proposal(proposal.action, params, proposal.source, proposal.rule, proposal.rationale,
                          proposal.confidence, proposal.facts_relied_on)
    values, problems = validate_payload(params_type(spec), params, gate.prefixes, where="params")
    if problems:  # cannot happen after the schema check; fail closed if it does
        return Deny(tuple(denies) + tuple(Reason("schema", p.message) for p in problems))
    graph = env.get(GRAPH_KEY)
    reads = reads if reads is not None else Reads()
    if graph is not None:
        values = resolve_params(values, [rs.plan.get("params", {}), gate.precondition_plan, gate.agents_plan],
                                graph, reads)
    try:
        envs, target_denies = target_envs(proposal.action, values, gate=gate, rs=rs, env=env, reads=reads)
    except Exception as exc:  # noqa: BLE001 - the target's facts could not be resolved (graph down): fail closed
        envs, target_denies = [], [Reason("target_error", f"the facts of the action's targets could not be "
                                                          f"resolved: {exc}")]
    denies += target_denies
    # Preconditions and limits read only the parameters (and their own graph paths): once.
    penv = dict(env)
    penv["action"] = proposal.action
    penv["params"] = values
    denies += _conditions(gate.preconditions.get(proposal.action, []), penv, "precondition", "precondition")
    # The guards read the facts: on each entity the action changes.
    for where, tenv in envs:
        genv = penv if tenv is env else {**tenv, "action": proposal.action, "params": values}
        for g in rs.guards:
            if g.applies_to and proposal.action not in g.applies_to:
                continue
            try:
                hit = truth(g.fn(genv))
            except Exception as exc:  # noqa: BLE001 - a guard that cannot be evaluated denies
                r, into = Reason("guard_error", f"guard error: {exc}", g.id), denies
            else:
                if hit is False:
                    continue
                # true, or unknown (a value is missing): fail closed
                msg = g.message if hit else f"{g.message} (could not be ruled out: a value is missing)"
                r, into = Reason(f"guard_{g.kind}", msg, g.id), denies if g.kind == "deny" else reviews
            if where:
                r = Reason(r.code, f"on {where}: {r.message}", r.id)
            if r not in into:
                into.append(r)
    reviews += _conditions(agent.limits(proposal.action), penv, "limit", "limit")
    if proposal.source == "llm" and (proposal.confidence is None or proposal.confidence < gate.confidence_threshold):
        reviews.append(Reason("low_confidence", f"model confidence {proposal.confidence} is below the threshold "
                                                f"{gate.confidence_threshold}"))
    if denies:
        return Deny(tuple(denies), tuple(reviews))
    if reviews:
        return Review(tuple(reviews), normalised)
    return Accept(normalised)


def _short(iri: str, prefixes: dict[str, str]) -> str:
    for p, ns in prefixes.items():
        if ns and iri.startswith(ns):
            return f"{p}:{iri[len(ns):]}"
    return iri


def target_envs(action: str, values: dict[str, Any], *, gate: Gate, rs: CompiledRuleset, env: dict[str, Any],
                reads: Reads) -> tuple[list[tuple[str, dict[str, Any]]], list[Reason]]:
    """The facts each check must hold on, as `(where, env)` pairs, and the target denials.

    A target that is the case's own entity is checked on the case's facts (`where` is empty). A
    target bound `case` that names another entity denies (`target_not_case`); one that binds to
    no case field denies (`target_unbound`). A target bound `any` that names another entity is
    checked on the facts the ruleset resolves for a case about that entity: the case with the
    bound field replaced, resolved again (its reads join the decision's provenance)."""
    from engine.kg.derived import GRAPH_KEY
    from engine.kg.resolver import resolve_facts

    raw_case = env.get("case")
    case: dict[str, Any] = raw_case if isinstance(raw_case, dict) else {}
    denies: list[Reason] = []
    choices: dict[str, list[Entity]] = {}
    for b in gate.targets(rs, action):
        v = values.get(b.param)
        items = [e for e in (v if isinstance(v, list) else [v]) if isinstance(e, Entity)]
        if not items:
            continue  # an optional target left out: the action changes nothing through it
        if b.field is None:
            denies.append(Reason("target_unbound", f"`{action}` changes its `{b.param}`, which binds to no field of "
                                 f"a `{rs.case_type}` case ({b.why}): it cannot be checked"))
            continue
        own = case.get(b.field)
        own_iri = own.iri if isinstance(own, Entity) else None
        others = [e for e in items if e.iri != own_iri]
        if not others:
            continue
        if b.mode != "any":
            for e in others:
                denies.append(Reason(
                    "target_not_case", f"`{action}` would change `{_short(e.iri, gate.prefixes)}` (its `{b.param}`), "
                    f"but this case is about `{_short(own_iri, gate.prefixes) if own_iri else 'nothing'}` "
                    f"(`case.{b.field}`)"))
            continue
        distinct = list({e.iri: e for e in items}.values())
        choices[b.field] = distinct
    if denies or not choices:
        return ([] if denies else [("", env)]), denies
    fields = sorted(choices)
    combos = list(itertools.islice(itertools.product(*(choices[f] for f in fields)), MAX_TARGET_CASES + 1))
    if len(combos) > MAX_TARGET_CASES:
        return [], [Reason("target_too_many", f"`{action}` names more than {MAX_TARGET_CASES} combinations of "
                                              "entities to check: split it into several proposals")]
    graph = env.get(GRAPH_KEY)
    out: list[tuple[str, dict[str, Any]]] = []
    for combo in combos:
        swapped = {f: e for f, e in zip(fields, combo, strict=True)
                   if not (isinstance(case.get(f), Entity) and case[f].iri == e.iri)}
        if not swapped:
            out.append(("", env))
            continue
        if graph is None:
            raise RuntimeError("no graph to resolve the target's facts from")
        payload = {**case, **{f: Entity(e.iri) for f, e in swapped.items()}}
        tenv, treads = resolve_facts(rs, payload, graph, as_of=env.get(TODAY))
        reads.items += treads.items
        reads.queries += treads.queries
        where = ", ".join(f"`{_short(e.iri, gate.prefixes)}`" for e in swapped.values())
        out.append((where, tenv))
    return out, denies
