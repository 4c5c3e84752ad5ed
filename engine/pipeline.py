"""THE decision flow, in one function: authenticate → resolve facts → match → (LLM fallback)
→ verify → (review queue).

Each stage is a call into the package that owns it; this file only orders them. Execution
and the audit trail join here in the governed-execution issue.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.act.catalog import proposal_hash
from engine.errors import AuthError, CaseError, Diagnostic, shown
from engine.govern.agents import Agent, check_name
from engine.govern.verify import Accept, Deny, Reason, Review, Verdict, verify
from engine.kg.resolver import Reads, case_entity_problems, resolve_facts
from engine.lang.compiler import CompiledRuleset, Rule
from engine.lang.payload import validate_payload
from engine.lang.semantics import get_path, to_json_value
from engine.match.hit import apply_hit_policy
from engine.model import Case
from engine.proposals import Proposal
from engine.workspace import Workspace

OUTCOMES = ("execute", "deny", "escalate", "no_action")


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
    source: str  # rule | llm | human | none
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
            "outcome": self.outcome,
            "source": self.source,
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


def ruleset_actions(rs: CompiledRuleset) -> list[str]:
    """The actions a ruleset is about: those its rules propose and its guards name."""
    names = {r.then.action for r in rs.rules if r.then.kind == "action" and r.then.action}
    names |= {a for g in rs.guards for a in g.applies_to}
    return sorted(names)


def _consequence_outcome(rule: Rule, env: dict[str, Any]) -> tuple[str, str, Proposal | None]:
    then = rule.then
    if then.kind == "action":
        params = {name: to_json_value(fn(env)) for name, (_node, fn) in then.params.items()}
        params = {k: v for k, v in params.items() if v is not None}  # unknown → absent: the schema decides
        return "execute", "", Proposal(then.action or "", params, "rule", rule.id)
    return {"escalate": "escalate", "deny": "deny", "no_action": "no_action"}[then.kind], then.message, None


def _verdict_outcome(verdict: Verdict) -> tuple[str, str, list[Reason]]:
    """(outcome, reason code, reasons) for a verdict; every verdict type is handled here."""
    if isinstance(verdict, Accept):
        return "execute", "", []
    if isinstance(verdict, Deny):
        codes = [r.code for r in verdict.reasons]
        return "deny", "guard_deny" if "guard_deny" in codes else codes[0], list(verdict.reasons)
    if isinstance(verdict, Review):
        codes = [r.code for r in verdict.reasons]
        return "escalate", "guard_review" if "guard_review" in codes else codes[0], list(verdict.reasons)
    raise AssertionError(f"unhandled verdict {verdict!r}")  # pragma: no cover


def _answer_json(answer: Any) -> dict[str, Any]:
    """What the model finally said, for the decision record and explanations."""
    if answer.proposal is not None:
        p = answer.proposal
        return {"kind": "proposal", "action": p.action, "params": p.params, "confidence": p.confidence,
                "rationale": p.rationale, "facts_relied_on": list(p.facts_relied_on)}
    if answer.escalation is not None:
        return {"kind": "escalation", "reason": answer.escalation}
    return {"kind": "failure", "failure": answer.failure, "message": answer.message}


def _authenticate(ws: Workspace, case: Case, rs_name: str, caller: str | None, identities: Any) -> Agent:
    """Who asks, and may they ask this ruleset.

    `caller` is the agent a key proved (None: no key was given, the case's `agent` names the
    identity — allowed unless the engine requires keys). `identities` (an
    `engine.govern.identity.IdentityStore`, or None) refuses revoked identities."""
    named = case.agent if case.agent and case.agent != "anonymous" else None
    if named is not None:
        check_name(named, "agent")
    if caller is not None:
        if named is not None and named != caller:
            raise AuthError(f"the key belongs to `{caller}`, but the case says it comes from `{named}`",
                            code="auth_identity_mismatch")
        named = caller
    agent = ws.agents.get(named)
    if agent is None:
        from engine.errors import suggest_help

        help_, _ = suggest_help(named or "", ws.agents.agents, "agents")
        raise AuthError([Diagnostic("agent_unknown", f"unknown agent `{named or ws.agents.default}`", help=help_)])
    if identities is not None:
        identities.check_not_revoked(agent.id)
    if not agent.may_ask(rs_name):
        raise AuthError([Diagnostic("agent_not_permitted", f"agent `{agent.id}` may not ask ruleset `{rs_name}`",
                                    help=f"its rulesets: {', '.join(agent.rulesets)}")])
    return agent


def prepare(ws: Workspace, case: Case, clock: Callable[[], dt.date], *, caller: str | None = None,
            identities: Any = None) -> tuple[CompiledRuleset, Agent, dict[str, Any], Reads, dt.date]:
    """The ruleset for the case type, the asking agent, the validated payload's facts resolved
    from the graph (exactly the planned paths, with provenance) and the decision date."""
    rs = ws.by_case_type.get(case.type)
    if rs is None:
        from engine.errors import suggest_help

        help_, _ = suggest_help(case.type, ws.by_case_type, "case types")
        raise CaseError([Diagnostic("no_ruleset", "no ruleset decides case type "
                                    f"`{shown(case.type)}`", help=help_)])
    agent = _authenticate(ws, case, rs.name, caller, identities)
    payload, problems = validate_payload(rs.case_schema, case.payload, ws.prefixes)
    if problems:
        raise CaseError(problems)
    as_of = dt.date.fromisoformat(case.as_of[:10]) if case.as_of else clock()
    assert ws.graph is not None, "the workspace graph is not loaded"
    problems = case_entity_problems(rs.case_schema, payload, ws.graph.store, ws.schema)
    if problems:
        raise CaseError(problems)
    env, reads = resolve_facts(rs, payload, ws.graph, as_of=as_of)
    return rs, agent, env, reads, as_of


def decide(ws: Workspace, case: Case, *, matcher_for: Callable[[CompiledRuleset], Any],
           clock: Callable[[], dt.date], new_id: Callable[[], str], fallback: Any = None,
           queue: Any = None, caller: str | None = None, identities: Any = None) -> Decision:
    """Decide one case. Pure apart from the graph reads, the model and the review queue; the
    clock and ids are injected. `fallback` is an `engine.llm.fallback.Fallback` (None: no LLM),
    `queue` an `engine.govern.review.ReviewQueue` (None: escalations are not persisted)."""
    t0 = time.perf_counter()
    # 1–2. which ruleset, who asks, is the payload valid; then resolve the planned facts.
    rs, agent, env, reads, as_of = prepare(ws, case, clock, caller=caller, identities=identities)
    t1 = time.perf_counter()
    # 3. match every rule, then let the hit policy pick.
    matcher = matcher_for(rs)
    matched = matcher.match(env)
    hit = apply_hit_policy(rs, matched)
    t2 = time.perf_counter()
    # 4. the consequence of the deciding rule(s).
    proposals: list[Proposal] = []
    source = "rule" if hit.deciding else "none"
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
    # 5. no rule decides: the LLM may propose (and repair once after a guard denial).
    llm_trace: dict[str, Any] | None = None
    checks: list[Reason] = []
    session = None
    if not hit.deciding and fallback is not None:
        from engine.llm.prompt import build_messages

        permitted = [a for a in ruleset_actions(rs) if agent.may_take(a)]
        llm_trace = {"model": fallback.model.name, "replayed": fallback.replaying, "attempts": [],
                     "permitted_actions": permitted, "asked_because": {"reason": reason, "message": message}}
        if not permitted:
            reason, message = "no_permitted_action", f"agent `{agent.id}` may take none of this ruleset's actions"
        else:
            messages = build_messages(
                rs=rs, case=case.to_json(), facts=facts_of(rs, env), env=env, agent=agent.id, why=message,
                provenance=[p.to_json() for p in reads.provenance()],
                actions={a: ws.gate.catalog.json_schema(a) for a in permitted})
            session = fallback.session(messages, catalog=ws.gate.catalog, permitted=permitted,
                                       ctx=ws.gate.param_ctx)
            answer = session.ask()
            llm_trace["answer"] = _answer_json(answer)
            if answer.proposal is not None:
                source, proposals = "llm", [answer.proposal]
            else:
                reason = "llm_escalated" if answer.escalation is not None else f"llm_{answer.failure}"
                message = (f"the model escalated: {answer.escalation}" if answer.escalation is not None
                           else f"LLM fallback failed ({answer.failure}): {answer.message}")
    # 6. verify every proposal, whoever made it: schema, scope & limits, preconditions, guards.
    verdicts: list[Verdict] = []
    for i, p in enumerate(proposals):
        verdict = verify(p, gate=ws.gate, rs=rs, env=env, agent=agent, reads=reads)
        while isinstance(verdict, Deny) and session is not None:  # an LLM proposal: one repair round
            repaired = session.repair_guards(p, [f"{r.id or r.code}: {r.message}" for r in verdict.reasons])
            if repaired is None:
                break
            if repaired.proposal is None:  # the model escalated, or failed, on its repair round
                code = "llm_escalated" if repaired.escalation is not None else f"llm_{repaired.failure}"
                verdict = Review((Reason(code, repaired.message),))
                break
            p = proposals[i] = repaired.proposal
            if llm_trace is not None:
                llm_trace["answer"] = _answer_json(repaired)
            verdict = verify(p, gate=ws.gate, rs=rs, env=env, agent=agent, reads=reads)
        verdicts.append(verdict)
    if verdicts:
        for v in verdicts:
            checks += _verdict_outcome(v)[2] + list(v.also if isinstance(v, Deny) else ())
        blocking = [v for v in verdicts if isinstance(v, Deny)] or [v for v in verdicts if isinstance(v, Review)]
        if blocking:  # deny wins over review; the proposals stay on the decision for the record
            outcome, reason, _ = _verdict_outcome(blocking[0])
            message = "; ".join(f"{r.id}: {r.message}" if r.id else r.message
                                for v in blocking for r in _verdict_outcome(v)[2])
        else:
            proposals = [v.proposal for v in verdicts if isinstance(v, Accept)]
            outcome, reason = "execute", source
            if source == "llm":
                message = proposals[0].rationale
    if session is not None and llm_trace is not None:
        llm_trace.update(attempts=[a.to_json() for a in session.attempts],
                         calls=sum(a.calls for a in session.attempts),
                         schema_repairs=session.schema_repairs, guard_repairs=session.guard_repairs,
                         verdict={"outcome": outcome, "reason": reason})
    guard_hits = [GuardResult(r.id or "", "review" if r.code == "guard_review" else "deny", r.message,
                              proposals[0].action if proposals else None)
                  for r in checks if r.code in ("guard_deny", "guard_review", "guard_error")]
    order = {g.id: i for i, g in enumerate(rs.guards)}
    guard_hits.sort(key=lambda g: order.get(g.id, len(order)))
    t3 = time.perf_counter()
    decision = Decision(
        id=new_id(), case=Case(case.type, case.payload, case.id, agent.id, case.as_of), ruleset=rs.name,
        outcome=outcome, source=source, reason=reason, message=message,
        proposals=proposals, matched=matched, deciding=[r.id for r in hit.deciding], guards=guard_hits,
        rule_revision=f"{rs.name}@{rs.version}", graph_revision=ws.store.revision if ws.store is not None else "",
        as_of=as_of.isoformat(), env=env, reads=reads,
        timings_us={"resolve": (t1 - t0) * 1e6, "match": (t2 - t1) * 1e6, "decide": (t3 - t2) * 1e6},
        matcher=getattr(matcher, "name", "durable"), checks=checks, llm=llm_trace, agent=agent.id)
    # 7. an escalation waits for a person, with its full context.
    if outcome == "escalate" and queue is not None:
        decision.review_id = enqueue(queue, decision, rs)
    return decision


def case_key(rs_name: str, case: Case) -> str:
    """Identifies a request across runs, for the review queue's one pending item per case: the
    ruleset and a hash of who asks and everything asked (agent, id, type, payload, as_of).

    INVARIANT: two requests share a pending review item only when all of these are equal. A key
    of the `id` alone let another agent's case (or another payload under a reused id) land in an
    item already pending, and its own escalation was never seen."""
    import hashlib
    import json

    body = json.dumps({"agent": case.agent, "id": case.id, "type": case.type, "payload": case.payload,
                       "as_of": case.as_of}, sort_keys=True, separators=(",", ":"), default=str)
    return f"{rs_name}:sha256:{hashlib.sha256(body.encode()).hexdigest()[:32]}"


def review_item(d: Decision, rs: CompiledRuleset) -> dict[str, Any]:
    """The review item of an escalated decision: the arguments of `ReviewQueue.enqueue`."""
    prop = d.proposals[0] if d.proposals else None
    return dict(case_key=case_key(rs.name, d.case), decision_id=d.id, ruleset=rs.name, case_type=d.case.type,
                agent=d.agent, reason=d.reason, message=d.message,
                proposal=prop.to_json() if prop else None,
                proposal_hash=proposal_hash(prop.action, prop.params) if prop else None,
                context=d.to_json(rs))


def enqueue(queue: Any, d: Decision, rs: CompiledRuleset) -> str:
    """Put an escalated decision in the review queue; returns the review item id."""
    return queue.enqueue(**review_item(d, rs)).id
