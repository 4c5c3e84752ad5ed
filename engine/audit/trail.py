"""What the audit trail of a decision holds: the steps, and the data each step records.

One decision appends, in order and in one transaction (`AuditLog.append_many`):

| step       | when                         | data                                                       |
|------------|------------------------------|------------------------------------------------------------|
| `received` | always                       | case, ruleset, rule and graph revision, as_of, matcher     |
| `facts`    | the graph was read           | facts the rules read, provenance triples, named queries    |
| `matched`  | always                       | rules_matched, rules_deciding, hit_policy                  |
| `llm`      | the LLM was asked            | model, replayed, attempts (prompt_hash, raw, errors), ...  |
| `verified` | a proposal was verified      | proposals, checks (every reason of the gate), guards       |
| `decided`  | always                       | outcome, source, reason, message, rule, rules, ruleset,    |
|            |                              | proposals, review_id                                       |

Later steps of the same decision: `reviewed` (review_id, verdict, reviewer, note, proposal
hash) and `executed` (chain_id, outcome, and per step: action, idempotency key, ledger status,
result, error, compensation — see `execution_event`). A
person's verdict appends, with its `reviewed` event, a new `decided` event with source `human`
(`review_events`): `execute` for an approval, `deny` for a rejection; an item nobody decided
in time expires as `deny` (source `none`, agent `expiry`). Who decided and the statistics read
the latest `decided` event of each decision.

The `agent` of an event is the identity responsible for the step: the asking agent for the
engine's steps, the reviewer for `reviewed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.lang.semantics import to_json_value

from .canonical import Native, encoded, jsonable, native

STEPS = ("received", "facts", "matched", "llm", "verified", "decided", "reviewed", "executed")
Item = tuple[str, str, str, "dict[str, Any] | Native"]  # (decision id, step, agent, data)


def _convert(value: Any) -> Any:
    """Runtime values (entities, dates) as the JSON an event holds; anything else fails loudly."""
    return jsonable(to_json_value(value))


def _native(value: dict[str, Any]) -> Native:
    """An event body, encoded once (`AuditLog.append` takes it as is; see `canonical.encoded`)."""
    return encoded(value, _convert)


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    """An event body as a plain JSON-native dict (what `_convert` makes of it)."""
    return native(value, _convert).data


def decision_events(d: Any, rs: Any = None, *, checked: bool = False) -> list[Item]:
    """The events of one decision (an `engine.decision.Decision`) for `AuditLog.append_many`.

    With `checked`, each event's data is a `Native` (checked and canonicalised here, once)
    instead of a dict: what the engine appends; the stored events are the same."""
    body: Callable[[dict[str, Any]], dict[str, Any] | Native] = _native if checked else _plain
    j = d.to_json(rs)
    agent: str = d.agent or "anonymous"
    did: str = d.id
    out: list[Item] = [(did, "received", agent, body({
        "case": j["case"], "ruleset": d.ruleset, "rule_revision": d.rule_revision,
        "graph_revision": d.graph_revision, "as_of": d.as_of, "matcher": d.matcher,
        **({"observed": d.case.cause} if getattr(d.case, "cause", None) else {})}))]
    if "provenance" in j or "facts" in j:
        out.append((did, "facts", agent, body({
            "facts": j.get("facts", {}), "provenance": j.get("provenance", []), "queries": j.get("queries", [])})))
    out.append((did, "matched", agent, body({
        "rules_matched": list(d.matched), "rules_deciding": list(d.deciding),
        "hit_policy": getattr(rs, "hit_policy", None)})))
    if d.llm is not None:
        out.append((did, "llm", agent, body(d.llm)))
    if d.proposals or d.checks:
        out.append((did, "verified", agent, body({
            "proposals": j["proposals"], "checks": j["checks"], "guards": j["guards"]})))
    out.append(_decided(d, j["proposals"], body))
    return out


def _decided(d: Any, proposals: list[Any], body: Any) -> Item:
    return (d.id, "decided", d.agent or "anonymous", body({
        "outcome": d.outcome, "source": d.source, "reason": d.reason, "message": d.message,
        "rule": d.deciding[0] if d.source == "rule" and d.deciding else None, "rules": list(d.deciding),
        "ruleset": d.ruleset, "proposals": proposals, "review_id": d.review_id}))


def decided_event(d: Any, rs: Any = None, *, checked: bool = False) -> Item:
    """The last event of `decision_events(d, rs)`, `decided`, alone."""
    return _decided(d, [p.to_json() for p in d.proposals], _native if checked else _plain)


def review_event(item: Any, *, checked: bool = False) -> Item:
    """The `reviewed` event of a decided review item (an `engine.govern.review.ReviewItem`)."""
    who = "expiry" if item.status == "expired" else item.reviewer or "unknown"
    body = _native if checked else _plain
    return (item.decision_id, "reviewed", who, body({
        "review_id": item.id, "verdict": item.status, "reviewer": item.reviewer, "note": item.note,
        "proposal": item.approved, "proposal_hash": item.approved_hash, "reason": item.reason}))


def review_events(item: Any) -> list[Item]:
    """A person's verdict on a review item: its `reviewed` event, then the decision it makes now
    (`decided`, source `human`): `execute` with the approved proposal, or `deny`."""
    approved, expired = item.status == "approved", item.status == "expired"
    return [review_event(item), (item.decision_id, "decided", "expiry" if expired else item.reviewer or "unknown",
                                 _plain({
        "outcome": "execute" if approved else "deny", "source": "none" if expired else "human",
        "reason": f"review_{item.status}", "message": item.note or "",
        "rule": None, "rules": [], "ruleset": item.ruleset, "proposals": [item.approved] if approved else [],
        "review_id": item.id, "reviewer": item.reviewer}))]


def execution_event(result: Any, agent: str) -> Item:
    """The `executed` event of a chain run (an `engine.act.execute.ChainResult`)."""
    steps = [{"index": st.index, "action": st.action, "key": st.key, "status": st.status, "result": st.result,
              "error_code": st.error_code, "error_message": st.error_message, "compensation": st.compensation}
             for st in result.steps]
    outcome = getattr(result.outcome, "value", result.outcome)
    return (result.decision_id, "executed", agent, _plain({
        "chain_id": result.chain_id, "outcome": outcome, "steps": steps, "error_code": result.error_code,
        "error_message": result.error_message}))


def who_decided(events: list[Any]) -> dict[str, Any]:
    """Who decided a traced decision: {by: rule | llm | human | agent | none, name, outcome, ...}."""
    decided = [e for e in events if e.step == "decided"]
    if not decided:
        return {"by": "none", "name": None, "outcome": None, "detail": "no `decided` event in the trace"}
    last = decided[-1].data
    source = last.get("source") or "none"
    name: Any = None
    if source == "rule":
        name = last.get("rule")
    elif source == "llm":
        name = next((e.data.get("model") for e in events if e.step == "llm"), None)
    elif source == "human":
        name = last.get("reviewer") or next((e.data.get("reviewer") for e in reversed(events)
                                             if e.step == "reviewed"), None)
    elif source == "agent":
        name = decided[-1].agent
    return {"by": source if source in ("rule", "llm", "human", "agent") else "none", "name": name,
            "outcome": last.get("outcome"), "reason": last.get("reason"), "ruleset": last.get("ruleset"),
            "review_id": last.get("review_id")}
