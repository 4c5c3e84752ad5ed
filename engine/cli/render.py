"""Human renderings of decisions and explanations (rich)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.lang.semantics import to_json_value

_COLOR = {"execute": "green", "deny": "red", "escalate": "yellow", "no_action": "cyan"}


def _v(value: Any) -> str:
    return json.dumps(to_json_value(value), default=str)


def render_decision(console: Console, d: Any, rs: Any) -> None:
    """A decision for people: outcome, why, what would run, and the facts behind it."""
    color = _COLOR.get(d.outcome, "white")
    console.print(f"[bold {color}]{d.outcome}[/]  ({d.reason})  case type [bold]{d.case.type}[/] → ruleset "
                  f"[bold]{d.ruleset}[/]")
    if d.message:
        console.print(f"  {d.message}", markup=False)
    for p in d.proposals:
        console.print(f"  action [bold]{p.action}[/] by rule [bold]{p.rule}[/]")
        for k, v in p.params.items():
            console.print(f"    {k} = {_v(v)}", markup=False)
    if d.matched:
        console.print(f"  rules matched: {', '.join(d.matched)}; deciding: {', '.join(d.deciding) or '-'}",
                      markup=False)
    for g in d.guards:
        console.print(f"  guard [bold]{g.id}[/] ({g.kind}): {g.message}")
    facts = d.facts(rs)
    if facts:
        t = Table(title="facts the rules read", show_edge=False)
        t.add_column("path")
        t.add_column("value")
        for k, v in facts.items():
            t.add_row(k, _v(v))
        console.print(t)
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
            console.print(f"     ✘ line {f.line}: {f.text}  is {state}", markup=False)
            if f.values:
                console.print(f"       where {_values(f.values)}", markup=False)
    for g in d.guards:
        console.print(f" [red]guard {g.id}[/] ({g.kind}): {g.message}")


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {_v(v)}" for k, v in values.items())
