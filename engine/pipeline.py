"""THE decision flow, in one function: authenticate → resolve facts → match → decide → guard.

Each stage is a call into the package that owns it; this file only orders them. The LLM
fallback, the verification gate, execution and the audit trail join here in later issues.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.errors import CaseError, Diagnostic
from engine.kg.resolver import Reads, resolve_facts
from engine.lang.compiler import CompiledRuleset, Guard, Rule
from engine.lang.payload import validate_payload
from engine.lang.semantics import to_json_value, truth
from engine.match.hit import apply_hit_policy
from engine.model import Case
from engine.workspace import Workspace

OUTCOMES = ("execute", "deny", "escalate", "no_action")


@dataclass
class Proposal:
    """An action with parameters, proposed by a rule (later also by the LLM, a person or an agent)."""

    action: str
    params: dict[str, Any]
    rule: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "params": to_json_value(self.params), "rule": self.rule}


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
    outcome: str  # execute | deny | escalate | no_action
    source: str  # rule | none
    reason: str  # a stable code: rule | no_rule_matched | unique_conflict | guard_deny | guard_review | ...
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

    def facts(self, rs: CompiledRuleset) -> dict[str, Any]:
        """The value of every scalar path and derived fact the rules read."""
        from engine.lang.semantics import get_path

        out: dict[str, Any] = {}
        for path in rs.network:
            kinds = rs.network_info[path][0]
            root = self.env.get(path[0])
            out[".".join(path)] = to_json_value(get_path(root, path[1:], kinds) if len(path) > 1 else root)
        for d in rs.derived:
            out[d.name] = to_json_value(self.env.get(d.name))
        return out

    def to_json(self, rs: CompiledRuleset | None = None, *, provenance: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": "DecisionV1",
            "id": self.id,
            "case": self.case.to_json(),
            "ruleset": self.ruleset,
            "outcome": self.outcome,
            "source": self.source,
            "reason": self.reason,
            "message": self.message,
            "proposals": [p.to_json() for p in self.proposals],
            "rules_matched": self.matched,
            "rules_deciding": self.deciding,
            "guards": [g.__dict__ for g in self.guards],
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


def _check_guards(rs: CompiledRuleset, proposal: Proposal, env: dict[str, Any]) -> list[GuardResult]:
    """Every guard that applies to the proposal's action; an error in a guard counts as `deny`."""
    fired = []
    genv = dict(env)
    genv["action"] = proposal.action
    genv["params"] = proposal.params
    for g in rs.guards:
        if g.applies_to and proposal.action not in g.applies_to:
            continue
        try:
            hit = truth(g.fn(genv)) is True
        except Exception as exc:  # fail closed: a guard that cannot be evaluated denies
            fired.append(GuardResult(g.id, "deny", f"guard error: {exc}", proposal.action))
            continue
        if hit:
            fired.append(GuardResult(g.id, g.kind, g.message, proposal.action))
    return fired


def _consequence_outcome(rule: Rule, env: dict[str, Any]) -> tuple[str, str, Proposal | None]:
    then = rule.then
    if then.kind == "action":
        params = {name: fn(env) for name, (_node, fn) in then.params.items()}
        return "execute", "", Proposal(then.action or "", params, rule.id)
    return {"escalate": "escalate", "deny": "deny", "no_action": "no_action"}[then.kind], then.message, None


def decide(ws: Workspace, case: Case, *, matcher_for: Callable[[CompiledRuleset], Any],
           clock: Callable[[], dt.date], new_id: Callable[[], str]) -> Decision:
    """Decide one case. Pure apart from the graph reads; the clock and ids are injected."""
    t0 = time.perf_counter()
    # 1. authenticate — a placeholder identity until agents arrive (issue: governed execution).
    agent = case.agent or "anonymous"
    # 2. which ruleset, and is the payload what it expects?
    rs = ws.by_case_type.get(case.type)
    if rs is None:
        from engine.errors import suggest_help

        help_, _ = suggest_help(case.type, ws.by_case_type, "case types")
        raise CaseError([Diagnostic("no_ruleset", f"no ruleset decides case type `{case.type}`", help=help_)])
    payload, problems = validate_payload(rs.case_schema, case.payload, ws.prefixes)
    if problems:
        raise CaseError(problems)
    as_of = dt.date.fromisoformat(case.as_of[:10]) if case.as_of else clock()
    # 3. resolve facts: exactly the planned paths, with provenance.
    assert ws.graph is not None, "the workspace graph is not loaded"
    env, reads = resolve_facts(rs, payload, ws.graph, as_of=as_of)
    t1 = time.perf_counter()
    # 4. match every rule, then let the hit policy pick.
    matcher = matcher_for(rs)
    matched = matcher.match(env)
    hit = apply_hit_policy(rs, matched)
    t2 = time.perf_counter()
    # 5. the consequence of the deciding rule(s), or an escalation when no rule decides.
    proposals: list[Proposal] = []
    outcome, reason, message = "escalate", "no_rule_matched", "no rule decides this case"
    if hit.conflict:
        reason = "unique_conflict"
        message = "more than one rule matches under hit policy `unique`: " + ", ".join(r.id for r in hit.conflict)
    elif hit.deciding:
        outcomes = []
        for rule in hit.deciding:
            o, msg, prop = _consequence_outcome(rule, env)
            outcomes.append((o, msg))
            if prop:
                proposals.append(prop)
        # Under `collect`, one escalation or denial decides for the whole case (fail closed).
        for severity in ("deny", "escalate", "execute", "no_action"):
            hits = [m for o, m in outcomes if o == severity]
            if hits:
                outcome, reason = severity, "rule"
                message = "; ".join(m for m in hits if m) or ""
                break
        if outcome != "execute":
            proposals = []
    # 6. guards: every proposal must pass them, whoever proposed it; deny always wins.
    guard_hits: list[GuardResult] = []
    for p in proposals:
        guard_hits.extend(_check_guards(rs, p, env))
    if guard_hits:
        denies = [g for g in guard_hits if g.kind == "deny"]
        chosen = denies or guard_hits
        outcome = "deny" if denies else "escalate"
        reason = "guard_deny" if denies else "guard_review"
        message = "; ".join(f"{g.id}: {g.message}" for g in chosen)
    t3 = time.perf_counter()
    decision = Decision(
        id=new_id(), case=Case(case.type, case.payload, case.id, agent, case.as_of), ruleset=rs.name,
        outcome=outcome, source="rule" if hit.deciding else "none", reason=reason, message=message,
        proposals=proposals, matched=matched, deciding=[r.id for r in hit.deciding], guards=guard_hits,
        rule_revision=f"{rs.name}@{rs.version}", graph_revision=ws.store.revision if ws.store else "",
        as_of=as_of.isoformat(), env=env, reads=reads,
        timings_us={"resolve": (t1 - t0) * 1e6, "match": (t2 - t1) * 1e6, "decide": (t3 - t2) * 1e6},
        matcher=getattr(matcher, "name", "durable"))
    return decision
