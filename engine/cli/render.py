"""Human renderings of decisions and explanations (rich)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.lang.semantics import to_json_value

_COLOR = {"execute": "green", "deny": "red", "escalate": "yellow", "no_action": "cyan"}


def _v(value: Any) -> str:
    return json.dumps(to_json_value(value), default=str)


def _facts_table(console: Console, facts: dict[str, Any], title: str) -> None:
    if facts:
        t = Table(title=title, show_edge=False)
        t.add_column("path")
        t.add_column("value")
        for k, v in facts.items():
            t.add_row(k, _v(v))
        console.print(t)


def render_decision(console: Console, d: Any, rs: Any) -> None:
    """A decision for people: outcome, why, what would run, and the facts behind it."""
    color = _COLOR.get(d.outcome, "white")
    console.print(f"[bold {color}]{d.outcome}[/]  ({d.reason})  case type [bold]{d.case.type}[/] → ruleset "
                  f"[bold]{d.ruleset}[/]")
    if d.message:
        console.print(f"  {d.message}", markup=False)
    for p in d.proposals:
        by = f"rule [bold]{p.rule}[/]" if p.source == "rule" else f"[bold]{p.source}[/]"
        console.print(f"  action [bold]{p.action}[/] proposed by {by}")
        for k, v in p.params.items():
            console.print(f"    {k} = {_v(v)}", markup=False)
        if p.source == "llm":
            console.print(f"    confidence {p.confidence}; rationale: {p.rationale}", markup=False)
    for c in d.checks:
        if not c.code.startswith("guard_"):
            console.print(f"  check [bold]{c.code}[/]{' ' + c.id if c.id else ''}: {c.message}", markup=False)
    if d.llm is not None:
        render_llm(console, d.llm)
    if d.execution is not None:
        render_execution(console, d.execution)
    if d.review_id:
        console.print(f"  waiting for a person: review item [bold]{d.review_id}[/] "
                      f"(rulebridge review show {d.review_id})")
    if d.matched:
        console.print(f"  rules matched: {', '.join(d.matched)}; deciding: {', '.join(d.deciding) or '-'}",
                      markup=False)
    for g in d.guards:
        console.print(f"  guard [bold]{g.id}[/] ({g.kind}): {g.message}")
    _facts_table(console, d.facts(rs), "facts the rules read")
    console.print(f"  rule revision {d.rule_revision} · graph revision {d.graph_revision} · as of {d.as_of} · "
                  f"{len(d.reads.provenance()) if d.reads else 0} triples read · decision {d.id}", markup=False)


def render_explanation(console: Console, ex: Any) -> None:
    """Why and why not: every rule of the ruleset, the first failing condition with actual values."""
    d = ex.decision
    render_decision(console, d, ex.ruleset)
    console.print()
    console.print(f"[bold]why / why not[/] — ruleset {ex.ruleset.name} (hit policy {ex.ruleset.hit_policy})")
    for t in sorted(ex.rules, key=lambda r: (-r.priority, 0)):
        deciding = t.id in d.deciding
        mark = "[green]✔ decides[/]" if deciding else "[green]✔ matched[/]" if t.matched else "[red]✘[/]"
        console.print(f" {mark} [bold]{t.id}[/] (priority {t.priority}) {t.description}")
        if t.matched:
            for c in t.conditions:
                console.print(f"     ✔ {c.text}    {_values(c.values)}", markup=False)
        elif t.failed is not None:
            f = t.failed
            state = "unknown (a value is missing)" if f.result is None else "false"
            rule = ex.ruleset.rule_by_id.get(t.id)
            where = Path(rule.span.file).name if rule is not None and rule.span is not None else "line"
            console.print(f"     ✘ {where}:{f.line}: {f.text} is {state}", markup=False)
            if f.values:
                console.print(f"       where {_values(f.values)}", markup=False)
            w = f.witness
            if w and w["kind"] == "all":
                state = "unknown" if w["result"] is None else "false"
                console.print(f"       first failing element: #{w['index'] + 1} {_v(w['element'])}: {w['test']} is "
                              f"{state}" + (f" where {_values(w['values'])}" if w["values"] else ""), markup=False)
            elif w:
                console.print(f"       none of the {w['tried']} element(s) tried satisfies {w['test']}",
                              markup=False)
    for g in d.guards:
        console.print(f" [red]guard {g.id}[/] ({g.kind}): {g.message}")
    if d.llm is not None:
        render_llm_why(console, d.llm)


def render_llm_why(console: Console, llm: dict[str, Any]) -> None:
    """The LLM's part in why / why not: why it was asked, what it answered, what the gate said."""
    asked = llm.get("asked_because") or {}
    console.print(f" [bold]LLM[/] asked because {asked.get('reason', '?')}: {asked.get('message', '')}")
    a = llm.get("answer")
    if a is None:
        console.print("     not called (no permitted action)", markup=False)
    elif a["kind"] == "proposal":
        console.print(f"     proposed {a['action']} {json.dumps(a['params'], sort_keys=True, default=str)} "
                      f"(confidence {a['confidence']})", markup=False)
        console.print(f"     rationale: {a['rationale']}", markup=False)
        if a.get("facts_relied_on"):
            console.print(f"     relied on: {', '.join(a['facts_relied_on'])}", markup=False)
    elif a["kind"] == "escalation":
        console.print(f"     escalated: {a['reason']}", markup=False)
    else:
        console.print(f"     failed ({a['failure']}): {a['message']}", markup=False)
    v = llm.get("verdict")
    if v:
        console.print(f"     gate: {v['outcome']} ({v['reason']})", markup=False)


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {_v(v)}" for k, v in values.items())


def render_llm(console: Console, llm: dict[str, Any]) -> None:
    """The LLM's part of a decision: model, each attempt, what was wrong with it."""
    origin = "replayed from a response file, not a live model" if llm.get("replayed") else "live"
    console.print(f"  LLM fallback: model [bold]{llm.get('model')}[/] ({origin}); {llm.get('calls', 0)} call(s), "
                  f"{llm.get('schema_repairs', 0)} schema repair(s), {llm.get('guard_repairs', 0)} guard repair(s); "
                  f"permitted actions: {', '.join(llm.get('permitted_actions') or []) or '-'}", markup=False)
    for i, a in enumerate(llm.get("attempts") or [], 1):
        state = a.get("error") or ("invalid" if a.get("errors") else "valid")
        console.print(f"    {i}. {a['kind']}: {state} (prompt {a['prompt_hash'][:12]}, "
                      f"{a.get('latency_ms', 0):.1f} ms)", markup=False)
        for e in a.get("errors") or []:
            console.print(f"       - {e}", markup=False)


def render_review_list(console: Console, items: list[Any], status: str) -> None:
    if not items:
        console.print(f"no {'' if status == 'all' else status + ' '}review items")
        return
    t = Table(title=f"review queue ({status})")
    for col in ("id", "status", "ruleset", "case", "reason", "proposal", "expires"):
        t.add_column(col)
    for i in items:
        case = i.context.get("case", {})
        prop = f"{i.proposal['action']} ({i.proposal_hash[:8]})" if i.proposal else "-"
        t.add_row(i.id, i.status, i.ruleset, str(case.get("id") or json.dumps(case.get("payload"))[:40]),
                  i.reason, prop, i.expires_at.strftime("%Y-%m-%d %H:%M"))
    console.print(t)


def render_review_item(console: Console, item: Any) -> None:
    ctx = item.context
    console.print(f"[bold]{item.id}[/]  {item.status}  ruleset {item.ruleset}  agent {item.agent}  "
                  f"created {item.created_at:%Y-%m-%d %H:%M} · expires {item.expires_at:%Y-%m-%d %H:%M}")
    console.print(f"  why it waits: {item.reason}: {item.message}", markup=False)
    console.print(f"  case: {_v(ctx.get('case'))}", markup=False)
    if item.proposal:
        console.print(f"  proposal ({item.proposal.get('source')}): {item.proposal['action']} "
                      f"{_v(item.proposal['params'])}  hash {item.proposal_hash}", markup=False)
        if item.proposal.get("rationale"):
            console.print(f"    rationale: {item.proposal['rationale']} (confidence {item.proposal.get('confidence')})",
                          markup=False)
    else:
        console.print("  no proposal: approve with --action NAME --params '{...}'")
    console.print(f"  rules matched: {', '.join(ctx.get('rules_matched') or []) or 'none'}", markup=False)
    for c in ctx.get("checks") or []:
        console.print(f"  check {c['code']}{' ' + c['id'] if c.get('id') else ''}: {c['message']}", markup=False)
    if ctx.get("llm"):
        render_llm(console, ctx["llm"])
    _facts_table(console, ctx.get("facts") or {}, "facts")
    if item.reviewer:
        console.print(f"  decided by {item.reviewer} at {item.decided_at:%Y-%m-%d %H:%M}: {item.note or ''}",
                      markup=False)


def render_execution(console: Console, ex: dict[str, Any]) -> None:
    """How a decision's actions ran: the outcome, each step's ledger status, refusals."""
    color = "green" if ex["outcome"] == "done" else "red" if ex["outcome"] == "refused" else "yellow"
    console.print(f"  executed: [bold {color}]{ex['outcome']}[/] (decision {ex['decision_id']})")
    for st in ex.get("steps") or []:
        comp = f", compensation {st['compensation']}" if st.get("compensation") else ""
        err = f" — {st['error_code']}: {st['error_message']}" if st.get("error_code") else ""
        console.print(f"    step {st['index'] + 1} {st['action']}: {st['status']}{comp}{err} (key {st['key'][:12]})",
                      markup=False)
    for r in ex.get("refused") or []:
        console.print(f"    refused step {r['step'] + 1} {r['action']}: {r['id'] or r['code']}: {r['message']}",
                      markup=False)
    if ex.get("error_code"):
        console.print(f"    {ex['error_code']}: {ex['error_message']}", markup=False)
