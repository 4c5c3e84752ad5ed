"""Each audit event as a few short lines for people: who decided, and the key data of each step.

One function per step, in a table (`LINES`) beside the event shapes of `engine.audit.trail`
that write them; the CLI's `audit show` prints these lines, and the web console will show the
same ones. A step the table does not know is shown as its JSON, so nothing is ever hidden.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Lines = list[str]


def short_json(value: Any, limit: int = 200) -> str:
    """`value` as JSON text, cut to `limit` characters (an ellipsis marks the cut)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def who_text(w: dict[str, Any]) -> str:
    """Who decided, in words, from `engine.audit.trail.who_decided`."""
    by = w["by"]
    if by == "rule":
        return f"rule `{w['name']}`" + (f" (ruleset {w['ruleset']})" if w.get("ruleset") else "")
    if by == "llm":
        return f"the LLM `{w['name'] or 'unknown model'}`"
    if by == "human":
        return f"reviewer `{w['name'] or 'unknown'}`"
    if by == "agent":
        return f"agent `{w['name']}`"
    if w.get("review_id"):
        return f"no one yet: waiting for a person in review item `{w['review_id']}`"
    return "no one" + (f" ({w['reason']})" if w.get("reason") else "")


def _received(d: dict[str, Any]) -> Lines:
    case = d.get("case", {})
    return [f"case {case.get('type')} {short_json(case.get('payload'))}",
            (f"ruleset {d.get('ruleset')} · rules {d.get('rule_revision')} · graph {d.get('graph_revision')}"
             f" · as of {d.get('as_of')}")]


def _facts(d: dict[str, Any]) -> Lines:
    lines = [f"{k} = {short_json(v, 120)}" for k, v in list((d.get("facts") or {}).items())[:20]]
    return lines + [(f"{len(d.get('provenance') or [])} graph triples read, "
                     f"{len(d.get('queries') or [])} named queries")]


def _matched(d: dict[str, Any]) -> Lines:
    return [f"rules matched: {', '.join(d.get('rules_matched') or []) or '-'}",
            f"deciding: {', '.join(d.get('rules_deciding') or []) or '-'} (hit policy {d.get('hit_policy')})"]


def _llm(d: dict[str, Any]) -> Lines:
    lines = [(f"model {d.get('model')}{' (replayed)' if d.get('replayed') else ''} · {d.get('calls', 0)} calls, "
              f"{d.get('schema_repairs', 0)} schema repairs, {d.get('guard_repairs', 0)} guard repairs")]
    for a in d.get("attempts") or []:
        lines.append(f"attempt {a.get('kind')}: prompt {str(a.get('prompt_hash'))[:16]}"
                     + (f" · error {a['error']}" if a.get("error") else "")
                     + (f" · invalid: {'; '.join(a['errors'])}" if a.get("errors") else ""))
    return lines


def _verified(d: dict[str, Any]) -> Lines:
    lines = [f"proposal {p.get('action')} {short_json(p.get('params'), 160)} by {p.get('source')}"
             + (f" {p['rule']}" if p.get("rule") else "") for p in d.get("proposals") or []]
    return lines + [f"check {c.get('code')}{' ' + c['id'] if c.get('id') else ''}: {c.get('message')}"
                    for c in d.get("checks") or []]


def _decided(d: dict[str, Any]) -> Lines:
    lines = [f"{d.get('outcome')} (source {d.get('source')}, reason {d.get('reason')})"
             + (f": {d['message']}" if d.get("message") else "")]
    if d.get("review_id"):
        lines.append(f"review item {d['review_id']}")
    return lines


def _reviewed(d: dict[str, Any]) -> Lines:
    return [(f"{d.get('verdict')} by {d.get('reviewer')}" if d.get("reviewer") else str(d.get("verdict")))
            + (f": {d['note']}" if d.get("note") else ""),
            *([f"approved {short_json(d['proposal'], 160)} (hash {str(d.get('proposal_hash'))[:12]})"]
              if d.get("proposal") else [])]


def _error(d: dict[str, Any]) -> str:
    return f" ({d['error_code']}: {d.get('error_message')})" if d.get("error_code") else ""


def _step_status(st: dict[str, Any]) -> str:
    return f"{st.get('action')} → {st.get('status')} (key {str(st.get('key'))[:16]})"


def _chain_run(d: dict[str, Any]) -> Lines:
    """A chain run (`trail.execution_event`): its outcome, then each step."""
    lines = [f"chain {d.get('chain_id')}: {d.get('outcome')}{_error(d)}"]
    for st in d.get("steps") or []:
        lines.append(_step_status(st)
                     + (f" result {short_json(st['result'], 120)}" if st.get("result") is not None else "")
                     + (f" error {st['error_code']}: {st.get('error_message')}" if st.get("error_code") else "")
                     + (f" compensation {st['compensation']}" if st.get("compensation") else ""))
    return lines


def _refused_chain(d: dict[str, Any]) -> Lines:
    """Re-verification refused a stored decision's chain (`pipeline.ACT`)."""
    return ([f"{d.get('outcome')}"]
            + [f"step {r.get('step', 0) + 1} {r.get('action')}: {r.get('code')}: {r.get('message')}"
               for r in d.get("refused") or []]
            + [_step_status(st) for st in d.get("steps") or []])


def _one_action(d: dict[str, Any]) -> Lines:
    """One executed action, as recorded before chains (older logs)."""
    return [f"{d.get('action')} → {d.get('status')}" + (f" via {d['connector']}" if d.get("connector") else ""),
            *([f"result {short_json(d['result'], 160)}"] if d.get("result") is not None else []),
            *([f"error {d['error']}"] if d.get("error") else [])]


def _executed(d: dict[str, Any]) -> Lines:
    if "steps" in d and not d.get("refused"):
        return _chain_run(d)
    if "key" in d and "action" in d and "status" in d:
        return _ledger_change(d)
    if "refused" in d:
        return _refused_chain(d)
    return _one_action(d)


def _ledger_change(d: dict[str, Any]) -> Lines:
    """One state change of the execution ledger (`engine.act.execute`: execution_started, ...)."""
    return [f"{d['action']} via {d.get('connector')}: {d['status']} (attempt {d.get('attempt')}, step "
            f"{d.get('step')}, key {str(d['key'])[:16]})"
            + (f" compensates {str(d['compensates'])[:16]}" if d.get("compensates") else "")
            + (" [replayed]" if d.get("replayed") else ""),
            *([f"result {short_json(d['result'], 160)}"] if d.get("result") is not None else []),
            *([f"error {d['error_code']}: {d.get('error_message')}"] if d.get("error_code") else [])]


def _chain_finished(d: dict[str, Any]) -> Lines:
    return [f"chain {d.get('chain_id')}: {d.get('outcome')}{_error(d)}"]


def _refused(d: dict[str, Any]) -> Lines:
    return [f"refused: {d.get('code')}: {d.get('message')}"]


# The steps a decision's trace can hold, in the order they happen, each with its lines.
LINES: dict[str, Callable[[dict[str, Any]], Lines]] = {
    "refused": _refused,
    "received": _received,
    "facts": _facts,
    "matched": _matched,
    "llm": _llm,
    "verified": _verified,
    "decided": _decided,
    "reviewed": _reviewed,
    "executed": _executed,
    "chain_finished": _chain_finished,
}


def event_lines(step: str, data: dict[str, Any]) -> Lines:
    """The key data of one event as short lines (its JSON when the step has no entry in `LINES`)."""
    fn = LINES.get(step)
    if fn is not None:
        return fn(data)
    if "key" in data and "action" in data and "status" in data:
        return _ledger_change(data)
    return [short_json(data)]


__all__ = ["LINES", "event_lines", "short_json", "who_text"]
