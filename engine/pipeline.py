"""THE governed flow: every step a case goes through, from arrival to audited execution, in order.

    DECIDE   authenticate → resolve → match → consequence → fallback → verify
    RECORD   the decision, its review item and its audit events: one unit of work
    (an escalation waits for a person: SETTLE — the reviewer, verified again, approve / reject)
    ACT      load → authorize → reverify → run → settle

Each stage is a short function over one context (`Flow` for a case, `Run` for an execution)
and the things it needs, passed in: what the rules and the graph say (`Deciding`) and where
side effects go (`engine.ports.Ports`). The tables below are the order; `run_stages` times
every stage (a decision's `timings_us`). Each stage calls into the package that owns the work:
`lang` (payloads), `kg` (facts), `match` (rules, hit policy), `llm` (the fallback), `govern`
(the gate), `act` (the ledger and connectors), `audit` (the events).
"""

from __future__ import annotations

import datetime as dt
from contextlib import nullcontext, suppress
from typing import Any

from engine.canonical import proposal_hash
from engine.case import Case
from engine.decision import OUTCOMES, Decision, GuardResult, Outcome, Source, case_key, facts_of, review_item
from engine.errors import AuthError, CaseError, Diagnostic, shown, suggest_help
from engine.flow import Acting, Deciding, ExecutionOutcome, Flow, Run, Stage, run_stages
from engine.govern.agents import check_name
from engine.govern.verify import Accept, Deny, Reason, Review, Verdict, verify
from engine.kg.resolver import case_entity_problems, resolve_facts
from engine.lang.compiler import CompiledRuleset, Rule
from engine.lang.payload import validate_payload
from engine.lang.semantics import to_json_value
from engine.match.hit import apply_hit_policy
from engine.ports import Ports
from engine.proposals import Proposal

# -- DECIDE ---------------------------------------------------------------------------------------

def authenticate(flow: Flow, d: Deciding) -> None:
    """Which ruleset decides the case type, who asks, and may they ask it.

    `flow.caller` is the agent a key proved (None: no key was given, the case's `agent` names
    the identity — allowed unless the engine requires keys)."""
    case = flow.case
    rs = d.rulesets.get(case.type)
    if rs is None:
        help_, _ = suggest_help(case.type, d.rulesets, "case types")
        raise CaseError([Diagnostic("no_ruleset", f"no ruleset decides case type `{shown(case.type)}`",
                                    help=help_)])
    named = case.agent if case.agent and case.agent != "anonymous" else None
    if named is not None:
        check_name(named, "agent")
    if flow.caller is not None:
        if named is not None and named != flow.caller:
            raise AuthError(f"the key belongs to `{flow.caller}`, but the case says it comes from `{named}`",
                            code="auth_identity_mismatch")
        named = flow.caller
    agent = d.agents.get(named)
    if agent is None:
        help_, _ = suggest_help(named or "", d.agents.agents, "agents")
        raise AuthError([Diagnostic("agent_unknown", f"unknown agent `{named or d.agents.default}`", help=help_)])
    if flow.identities is not None:
        flow.identities.check_not_revoked(agent.id)
    if not agent.may_ask(rs.name):
        raise AuthError([Diagnostic("agent_not_permitted", f"agent `{agent.id}` may not ask ruleset `{rs.name}`",
                                    help=f"its rulesets: {', '.join(agent.rulesets)}")])
    flow.rs, flow.agent = rs, agent


def resolve(flow: Flow, d: Deciding) -> None:
    """The payload against the case schema, every entity it names against the graph, then the
    planned facts (exactly the paths the rules read, with the triples they came from)."""
    rs, case = flow.rs, flow.case
    payload, problems = validate_payload(rs.case_schema, case.payload, dict(d.prefixes))
    if problems:
        raise CaseError(problems)
    flow.as_of = dt.date.fromisoformat(case.as_of[:10]) if case.as_of else d.clock()
    assert d.graph is not None, "the workspace graph is not loaded"
    problems = case_entity_problems(rs.case_schema, payload, d.graph.store, d.schema)
    if problems:
        raise CaseError(problems)
    flow.env, flow.reads = resolve_facts(rs, payload, d.graph, as_of=flow.as_of)


def match(flow: Flow, d: Deciding) -> None:
    """Every rule that matches, then the ruleset's hit policy picks the deciding rule(s)."""
    matcher = d.matcher_for(flow.rs)
    flow.matcher = getattr(matcher, "name", "durable")
    flow.matched = matcher.match(flow.env)
    flow.hit = apply_hit_policy(flow.rs, flow.matched)


def consequence(flow: Flow, d: Deciding) -> None:
    """What the deciding rule(s) say: proposals to verify, or an escalation, denial or no action.
    Under `collect`, one escalation or denial decides for the whole case (fail closed)."""
    hit = flow.hit
    if hit.conflict:
        flow.reason = "unique_conflict"
        flow.message = ("more than one rule matches under hit policy `unique`: "
                        + ", ".join(r.id for r in hit.conflict))
        return
    if not hit.deciding:
        return
    flow.source = Source.RULE
    said: list[tuple[Outcome, str]] = []
    for rule in hit.deciding:
        outcome, message, proposal = _consequence_of(rule, flow.env)
        said.append((outcome, message))
        if proposal is not None:
            flow.proposals.append(proposal)
    for severity in (Outcome.DENY, Outcome.ESCALATE, Outcome.EXECUTE, Outcome.NO_ACTION):
        messages = [m for o, m in said if o == severity]
        if messages:
            flow.outcome, flow.reason, flow.message = severity, "rule", "; ".join(m for m in messages if m)
            break
    if flow.outcome != Outcome.EXECUTE:
        flow.proposals = []


def fallback(flow: Flow, d: Deciding) -> None:
    """No rule decides: the model may propose, among the actions this agent may take, from the
    case and facts as quoted data; its answer must fit the action's schema (bounded repair)."""
    if flow.hit.deciding or d.fallback is None or not flow.use_model:
        return
    from engine.llm.prompt import build_messages

    rs, agent = flow.rs, flow.agent
    permitted = [a for a in rs.actions if agent.may_take(a)]
    flow.llm = {"model": d.fallback.model.name, "replayed": d.fallback.replaying, "attempts": [],
                "permitted_actions": permitted, "asked_because": {"reason": flow.reason, "message": flow.message}}
    if not permitted:
        flow.reason = "no_permitted_action"
        flow.message = f"agent `{agent.id}` may take none of this ruleset's actions"
        return
    messages = build_messages(
        rs=rs, case=flow.case.to_json(), facts=facts_of(rs, flow.env), env=flow.env, agent=agent.id,
        why=flow.message, provenance=[p.to_json() for p in flow.reads.provenance()],
        actions={a: d.gate.catalog.json_schema(a) for a in permitted})
    flow.session = d.fallback.session(messages, catalog=d.gate.catalog, permitted=permitted, ctx=d.gate.param_ctx)
    answer = flow.session.ask()
    flow.llm["answer"] = _answer_json(answer)
    if answer.proposal is not None:
        flow.source, flow.proposals = Source.LLM, [answer.proposal]
    elif answer.escalation is not None:
        flow.reason, flow.message = "llm_escalated", f"the model escalated: {answer.escalation}"
    else:
        flow.reason = f"llm_{answer.failure}"
        flow.message = f"LLM fallback failed ({answer.failure}): {answer.message}"


def verify_proposals(flow: Flow, d: Deciding) -> None:
    """Every proposal, whoever made it, through the gate: schema, scope, the entities it changes,
    preconditions, guards, limits. A model's denied proposal gets one repair round. Deny wins
    over review; only when every proposal is accepted does the case execute."""
    verdicts: list[Verdict] = []
    for i, p in enumerate(flow.proposals):
        verdict = _verify(p, flow, d)
        while isinstance(verdict, Deny) and flow.session is not None:  # the model's one repair round
            repaired = flow.session.repair_guards(p, [f"{r.id or r.code}: {r.message}" for r in verdict.reasons])
            if repaired is None:
                break
            if repaired.proposal is None:  # the model escalated, or failed, on its repair round
                code = "llm_escalated" if repaired.escalation is not None else f"llm_{repaired.failure}"
                verdict = Review((Reason(code, repaired.message),))
                break
            p = flow.proposals[i] = repaired.proposal
            if flow.llm is not None:
                flow.llm["answer"] = _answer_json(repaired)
            verdict = _verify(p, flow, d)
        verdicts.append(verdict)
    for v in verdicts:
        flow.checks += _verdict_outcome(v)[2] + list(v.also if isinstance(v, Deny) else ())
    blocking: list[Verdict] = [v for v in verdicts if isinstance(v, Deny)]
    blocking = blocking or [v for v in verdicts if isinstance(v, Review)]
    if blocking:  # the proposals stay on the decision, for the record
        flow.outcome, flow.reason, _ = _verdict_outcome(blocking[0])
        flow.message = "; ".join(f"{r.id}: {r.message}" if r.id else r.message
                                 for v in blocking for r in _verdict_outcome(v)[2])
    elif verdicts:
        flow.proposals = [v.proposal for v in verdicts if isinstance(v, Accept)]
        flow.outcome, flow.reason = Outcome.EXECUTE, flow.source._value_
        if flow.source == Source.LLM:
            flow.message = flow.proposals[0].rationale
    if flow.session is not None and flow.llm is not None:
        s = flow.session
        flow.llm.update(attempts=[a.to_json() for a in s.attempts], calls=sum(a.calls for a in s.attempts),
                        schema_repairs=s.schema_repairs, guard_repairs=s.guard_repairs,
                        verdict={"outcome": flow.outcome._value_, "reason": flow.reason})


DECIDE: tuple[Stage[Flow, Deciding], ...] = (
    Stage("authenticate", authenticate),  # which ruleset, who asks, may they
    Stage("resolve", resolve),  # the payload, its entities, the facts the rules read
    Stage("match", match),  # every matching rule, then the hit policy
    Stage("consequence", consequence),  # what the deciding rule(s) propose
    Stage("fallback", fallback),  # no rule decides: the model may propose
    Stage("verify", verify_proposals),  # every proposal through the gate
)


def prepare(d: Deciding, case: Case, *, caller: str | None = None, identities: Any = None) -> Flow:
    """The first two stages: the ruleset, the asking agent and the resolved facts of a case
    (what verifying a proposal against a case needs)."""
    flow = Flow(case, caller, identities)
    run_stages(DECIDE[:2], flow, d, flow.timings_us)
    return flow


def decide(d: Deciding, case: Case, *, caller: str | None = None, identities: Any = None,
           llm: bool = True) -> Decision:
    """Decide one case: the DECIDE stages, in order. Writes nothing (the graph is read, the model
    may be asked); `record` writes the decision."""
    flow = Flow(case, caller, identities, use_model=llm)
    run_stages(DECIDE, flow, d, flow.timings_us)
    return _decision_of(flow, d)


# -- RECORD ---------------------------------------------------------------------------------------

def record(ports: Ports, decision: Decision, rs: CompiledRuleset, *, enqueue: bool = True) -> None:
    """The decision's audit events, its review item when it escalates (both, or neither), and
    its record when it acts (so `execute` can find it): in the caller's unit of work.

    INVARIANT: a decision that can be executed always has its audit events; no review item waits
    without them (a person could approve, and execute, what the audit log never recorded)."""
    from engine.audit.trail import decided_event, decision_events

    review = None
    if enqueue and decision.outcome == Outcome.ESCALATE:
        from engine.govern.review import new_item_id

        review = review_item(decision, rs)  # its context is the decision before it waits in the queue
        decision.review_id = new_item_id()
    items = decision_events(decision, rs, checked=True)
    if review is None:
        ports.audit.append_many(items)  # the log first
    else:
        # One database: item and events in one savepoint of the unit. A separate audit database:
        # the item is removed again when its events cannot be appended.
        unit = ports.audit.current_unit() if ports.one_database else None
        with unit.atomic() if unit is not None else nullcontext():
            item = ports.queue.enqueue(**review, item_id=decision.review_id)
            created = item.id == decision.review_id
            if not created:  # the same request is pending already: it waits in that item
                decision.review_id = item.id
                items[-1] = decided_event(decision, rs, checked=True)
            try:
                ports.audit.append_many(items)
            except BaseException:
                if created and unit is None:
                    ports.queue.discard(item.id, decision_id=decision.id)
                raise
    if decision.outcome == Outcome.EXECUTE:
        ports.decisions.record(id=decision.id, agent=decision.agent, ruleset=decision.ruleset,
                               outcome=decision.outcome._value_, source=decision.source._value_,
                               case=decision.case.to_json(), proposals=[p.to_json() for p in decision.proposals])


def govern(d: Deciding, ports: Ports, case: Case, *, key: str | None = None, llm: bool = True,
           review: bool = True, execute: bool = False, max_case_bytes: int | None = None) -> Decision:
    """The whole flow for one case: DECIDE, then RECORD, then (with `execute`) ACT. A refusal — an
    identity, a case too large to audit — is audited and raised before anything is decided."""
    from engine.case import check_case_size

    try:
        if max_case_bytes is not None:
            check_case_size(case, max_case_bytes)
        caller = ports.authenticate(key)
        decision = decide(d, case, caller=caller, identities=ports.identities_if_used(), llm=llm)
    except (AuthError, CaseError) as exc:
        if isinstance(exc, AuthError) or exc.code == "case_too_large":  # a large case: audited by its hash
            ports.audit_refusal(d.new_id(), case.agent or "anonymous", exc, case=case.to_json())
        raise
    rs = d.rulesets[case.type]
    acts = execute and decision.outcome == Outcome.EXECUTE
    # One database: the review item, the events and the decision record commit together; with
    # `execute`, the chain's claim too (the unit is committed before the connector acts).
    with ports.units(review=review, execute=acts).unit() if ports.one_database else nullcontext():
        record(ports, decision, rs, enqueue=review)
        if acts:
            decision.execution = act(d, ports, decision.id, key=key, decided=decision).to_json()
    return decision


# -- ACT ------------------------------------------------------------------------------------------

def load(run: Run, a: Acting) -> None:
    """What to run: the decision just made, a stored `execute` decision, or an approved review item."""
    from engine.act.execute import ExecutionError

    if run.decided is not None:
        dec = run.decided
        run.decision_id, run.agent, run.case, run.source = dec.id, dec.agent, dec.case, dec.source._value_
        run.proposals = [p.to_json() for p in dec.proposals]
        run.fresh = dec.graph_revision == a.deciding.graph_revision()
    elif run.ident.startswith("R-"):
        item = a.ports.queue.get(run.ident)
        if item.status not in ("approved", "applied") or not item.approved:
            raise ExecutionError(f"review item `{run.ident}` is {item.status}: only an approved item executes",
                                 code="not_executable")
        run.decision_id, run.agent, run.case = item.decision_id, item.agent, Case.from_json(item.context["case"])
        run.proposals, run.source = [item.approved], "human"
    else:
        stored = a.ports.decisions.get(run.ident)
        if stored.outcome != "execute":
            raise ExecutionError(f"decision `{run.ident}` is {stored.outcome}: nothing to execute",
                                 code="not_executable")
        run.decision_id, run.agent, run.case = stored.id, stored.agent, Case.from_json(stored.case)
        run.proposals, run.source = stored.proposals, stored.source


def authorize(run: Run, a: Acting) -> None:
    """A key, when given, must be the agent's who asked; that identity must not be revoked."""
    proved: str | None = None
    try:
        proved = a.ports.authenticate(a.key)
        if proved is not None and proved != run.agent:
            raise AuthError(f"the key belongs to `{proved}`, but decision `{run.decision_id}` was asked by "
                            f"`{run.agent}`", code="auth_identity_mismatch")
        identities = a.ports.identities_if_used()
        if identities is not None:
            identities.check_not_revoked(run.agent)
    except AuthError as exc:
        a.ports.audit_refusal(run.decision_id, proved or run.agent, exc, execute=run.ident)
        raise


def reverify(run: Run, a: Acting) -> None:
    """The chain as a whole, against the graph as it is now: each step not done yet is verified
    again (a reviewer's approval settled the review reasons: only a deny refuses it), with its
    inverse for compensation. One step that does not pass refuses the chain before anything runs."""
    from engine.act.execute import ExecutionError, Step
    from engine.act.ledger import idempotency_key

    try:
        for i, p in enumerate(run.proposals):
            spec = a.deciding.actions.actions.get(p["action"])
            if spec is None or spec.execute is None:
                raise ExecutionError(f"action `{p['action']}` is bound to no connector", code="no_connector")
            params = p["params"]
            done = None if run.fresh else a.ports.executor.ledger.get(
                idempotency_key(run.decision_id, i, p["action"], params))
            run.done_before += done is not None and done.status == "done"
            if not run.fresh and (done is None or done.status != "done"):
                # the proposal as it was decided (a model's keeps its confidence and rationale)
                assert run.case is not None
                verdict = verify_against(a.deciding, run.case,
                                         Proposal.from_json({**p, "params": dict(params), "source": run.source}))
                if isinstance(verdict, Deny) or (not isinstance(verdict, Accept) and run.source != "human"):
                    run.refused += [{"step": i, "action": p["action"], "code": r.code, "id": r.id,
                                     "message": r.message} for r in verdict.reasons]
                    continue
                if verdict.proposal is not None:
                    params = verdict.proposal.params
            inverse = None
            if spec.inverse is not None:
                inv_spec = a.deciding.actions.actions[spec.inverse.action]
                inverse = Step(spec.inverse.action, spec.inverse.derive(params),
                               inv_spec.execute.connector if inv_spec.execute else "")
            run.steps.append(Step(p["action"], params, spec.execute.connector, inverse))
    except (AuthError, CaseError, ExecutionError) as exc:
        a.ports.audit_refusal(run.decision_id, run.agent, exc, execute=run.ident)
        raise


def execute_chain(run: Run, a: Acting) -> None:
    """Refused: nothing runs (if part of the chain took effect before a crash, a person decides
    about it). Otherwise every step runs exactly once through its connector, the outcome, its
    events and the decision's status in one commit (`settle`, inside the same unit)."""
    ports = a.ports
    if run.refused:
        if run.done_before:
            ports.executor.ledger.move_chain(
                run.decision_id, from_=("running", "compensating"), to="needs_review",
                now=dt.datetime.now(dt.UTC), error_code="reverify_refused",
                error_message="; ".join(f"{r['action']}: {r['message']}" for r in run.refused)[:500])
        run.outcome = ExecutionOutcome(run.decision_id, "needs_review" if run.done_before else "refused", [],
                                       run.refused)
        settle(run, a)
        return
    one = ports.one_database and not run.ident.startswith("R-")
    with ports.units(review=False, execute=True).unit() if one else nullcontext():
        result = ports.executor.run(run.decision_id, run.agent, run.steps)
        run.outcome = ExecutionOutcome(run.decision_id, result.outcome, [st.__dict__ for st in result.steps], [],
                                       result)
        settle(run, a)


def settle(run: Run, a: Acting) -> None:
    """The `executed` event, then the decision's status (or the review item consumed, once)."""
    from engine.act.decision_store import DecisionNotFound
    from engine.audit.canonical import native

    outcome = run.outcome
    assert outcome is not None
    a.ports.audit.append(run.decision_id, "executed", run.agent, native(outcome.to_json()))
    if outcome.outcome in ("in_progress", "pending"):
        return  # another caller holds the chain; its outcome is the one to record
    if run.ident.startswith("R-"):
        if outcome.outcome == "done":
            item = a.ports.queue.get(run.ident)
            a.ports.queue.consume(run.ident, item.approved_hash)
        return
    status = {"done": "executed", "refused": "refused"}.get(outcome.outcome, outcome.outcome)
    with suppress(DecisionNotFound):  # recorded by `record` before it can execute
        a.ports.decisions.finish(run.decision_id, status, outcome.to_json())


ACT: tuple[Stage[Run, Acting], ...] = (
    Stage("load", load),  # the decision or approved review item to run
    Stage("authorize", authorize),  # the key is the asking agent's; not revoked
    Stage("reverify", reverify),  # the whole chain, against the graph as it is now
    Stage("run", execute_chain),  # each step exactly once; then `settle`: events, status
)


def act(d: Deciding, ports: Ports, ident: str, *, key: str | None = None,
        decided: Decision | None = None) -> ExecutionOutcome:
    """Execute a decision (its id) or an approved review item (`R-...`): the ACT stages, in order.
    Running it again returns the recorded outcome; nothing runs twice."""
    run = Run(ident, decided)
    run_stages(ACT, run, Acting(d, ports, key), run.timings_us)
    assert run.outcome is not None
    return run.outcome


# -- SETTLE: a person decides an escalation ------------------------------------------------------

def reviewer_of(d: Deciding, ports: Ports, item: Any, reviewer: str | None, key: str | None) -> str:
    """The reviewer who settles `item`: declared, permitted for its ruleset, not revoked, and proved
    by their key when one is given (or required). A refusal is audited on the item's decision."""
    from engine.govern.review import ReviewError

    try:
        proved = ports.authenticate(key, "reviewer")
        if reviewer:
            check_name(reviewer, "reviewer")
        if proved is not None:
            if reviewer and reviewer != proved:
                raise AuthError(f"the key belongs to reviewer `{proved}`, not `{reviewer}`",
                                code="auth_identity_mismatch")
            reviewer = proved
        if not reviewer or not reviewer.strip():
            raise ReviewError("a review names its reviewer (--reviewer)", code="review_incomplete")
        found = d.agents.reviewer(reviewer)
        if found is None:
            help_, _ = suggest_help(reviewer, d.agents.reviewers, "reviewers")
            raise AuthError([Diagnostic("reviewer_unknown", f"unknown reviewer `{reviewer}`", help=help_)])
        identities = ports.identities_if_used()
        if identities is not None:
            identities.check_not_revoked(reviewer)
        if not found.may_review(item.ruleset):
            raise AuthError([Diagnostic("reviewer_not_permitted",
                                        f"reviewer `{reviewer}` may not settle `{item.ruleset}` escalations",
                                        help=f"their rulesets: {', '.join(found.rulesets)}")])
        return reviewer
    except AuthError as exc:
        ports.audit_refusal(item.decision_id, reviewer or "unknown", exc, review=item.id)
        raise


def approve(d: Deciding, ports: Ports, item_id: str, *, reviewer: str | None, action: str | None = None,
            params: dict[str, Any] | None = None, expect_hash: str | None = None, note: str = "",
            key: str | None = None) -> Any:
    """A reviewer approves a pending item: the proposal waiting in it, or one they give. It is
    verified again now as a `human` proposal (any deny refuses it; review reasons are what the
    reviewer settles), bound to the hash of the exact action and parameters, and audited with the
    decision it makes (source `human`)."""
    from engine.audit.trail import review_events
    from engine.govern.review import ReviewError, expected_hash

    if expect_hash is not None:
        expect_hash = expected_hash(expect_hash)
    item = ports.queue.get(item_id)
    who = reviewer_of(d, ports, item, reviewer, key)
    if item.status != "pending":
        raise ReviewError(f"review item `{item_id}` is {item.status}, not pending", code="review_not_pending")
    if action is None:
        if item.proposal is None:
            raise ReviewError(f"review item `{item_id}` has no proposal; give the action and its parameters",
                              code="review_needs_action")
        action, params = item.proposal["action"], item.proposal["params"]
    if expect_hash is not None:
        if item.proposal_hash is None:
            raise ReviewError(f"review item `{item_id}` has no proposal, so no hash to compare `{expect_hash}` "
                              "with: approve without --hash", code="review_hash_mismatch")
        if not item.proposal_hash.startswith(expect_hash):
            raise ReviewError(f"the proposal of `{item_id}` is {item.proposal_hash[:12]}, not {expect_hash}: "
                              "it is not what you reviewed", code="review_hash_mismatch")
    verdict = verify_against(d, Case.from_json(item.context["case"]), Proposal(action, dict(params or {}), "human"))
    if isinstance(verdict, Deny):
        raise ReviewError("the approval is refused by the verification gate: " + "; ".join(
            f"{r.id or r.code}: {r.message}" for r in verdict.reasons), code="review_denied")
    approved = verdict.proposal
    if approved is None:  # pragma: no cover - the gate's verdicts always carry the proposal; fail closed
        raise ReviewError("the approval could not be verified", code="review_denied")
    settled = ports.queue.approve(item_id, reviewer=who, proposal=approved.to_json(),
                                  proposal_hash=proposal_hash(approved.action, approved.params), note=note)
    ports.audit.append_many(review_events(settled))
    return settled


def reject(d: Deciding, ports: Ports, item_id: str, *, reviewer: str | None, reason: str,
           key: str | None = None) -> Any:
    """A reviewer rejects a pending item, with a reason; audited with the decision it makes."""
    from engine.audit.trail import review_events
    from engine.govern.review import ReviewError

    if not reason.strip():
        raise ReviewError("a rejection gives a reason", code="review_incomplete")
    who = reviewer_of(d, ports, ports.queue.get(item_id), reviewer, key)
    settled = ports.queue.reject(item_id, reviewer=who, reason=reason)
    ports.audit.append_many(review_events(settled))
    return settled


def verify_against(d: Deciding, case: Case, proposal: Proposal) -> Verdict:
    """The gate's verdict on a proposal (from anyone) against the facts of a case, now."""
    flow = prepare(d, case)
    return _verify(proposal, flow, d)


# -- small helpers of the stages ------------------------------------------------------------------

def _verify(p: Proposal, flow: Flow, d: Deciding) -> Verdict:
    return verify(p, gate=d.gate, rs=flow.rs, env=flow.env, agent=flow.agent, reads=flow.reads)


def _consequence_of(rule: Rule, env: dict[str, Any]) -> tuple[Outcome, str, Proposal | None]:
    then = rule.then
    if then.kind == "action":
        params = {name: to_json_value(fn(env)) for name, (_node, fn) in then.params.items()}
        params = {k: v for k, v in params.items() if v is not None}  # unknown → absent: the schema decides
        return Outcome.EXECUTE, "", Proposal(then.action or "", params, "rule", rule.id)
    return Outcome(then.kind), then.message, None


def _verdict_outcome(verdict: Verdict) -> tuple[Outcome, str, list[Reason]]:
    """(outcome, reason code, reasons) for a verdict; every verdict type is handled here."""
    if isinstance(verdict, Accept):
        return Outcome.EXECUTE, "", []
    codes = [r.code for r in verdict.reasons]
    if isinstance(verdict, Deny):
        return Outcome.DENY, "guard_deny" if "guard_deny" in codes else codes[0], list(verdict.reasons)
    if isinstance(verdict, Review):
        return Outcome.ESCALATE, "guard_review" if "guard_review" in codes else codes[0], list(verdict.reasons)
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


def _decision_of(flow: Flow, d: Deciding) -> Decision:
    """The decision a flow came to, with the guards that fired in the ruleset's order."""
    rs, case = flow.rs, flow.case
    action = flow.proposals[0].action if flow.proposals else None
    guards = [GuardResult(r.id or "", "review" if r.code == "guard_review" else "deny", r.message, action)
              for r in flow.checks if r.code in ("guard_deny", "guard_review", "guard_error")]
    order = {g.id: i for i, g in enumerate(rs.guards)}
    guards.sort(key=lambda g: order.get(g.id, len(order)))
    assert flow.as_of is not None
    return Decision(
        id=d.new_id(), case=Case(case.type, case.payload, case.id, flow.agent.id, case.as_of, case.cause),
        ruleset=rs.name,
        outcome=flow.outcome, source=flow.source, reason=flow.reason, message=flow.message,
        proposals=flow.proposals, matched=flow.matched, deciding=[r.id for r in flow.hit.deciding], guards=guards,
        rule_revision=f"{rs.name}@{rs.version}", graph_revision=d.graph_revision(), as_of=flow.as_of.isoformat(),
        env=flow.env, reads=flow.reads, timings_us=flow.timings_us, matcher=flow.matcher, checks=flow.checks,
        llm=flow.llm, agent=flow.agent.id)


__all__ = ["ACT", "DECIDE", "OUTCOMES", "Acting", "Deciding", "Decision", "ExecutionOutcome", "Flow", "GuardResult",
           "Outcome", "Run", "Source", "Stage", "act", "case_key", "decide", "facts_of", "govern", "prepare",
           "record", "review_item", "run_stages", "verify_against", "approve", "reject", "reviewer_of"]
