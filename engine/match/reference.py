"""The plain-Python reference evaluator: the specification the durable-rules matcher must meet.

It evaluates every rule's conditions in order with the compiled closures. It is used for
explanations ("why" and "why not") and by the differential tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.lang.compiler import CompiledRuleset, Condition, Rule
from engine.lang.expr import Path, walk
from engine.lang.semantics import to_json_value, truth


def match_reference(rs: CompiledRuleset, env: dict[str, Any]) -> list[str]:
    """Ids of the rules whose conditions all hold, in ruleset order."""
    out = []
    for r in rs.rules:
        for c in r.conditions:
            if truth(c.fn(env)) is not True:
                break
        else:
            out.append(r.id)
    return out


@dataclass
class ConditionTrace:
    """One condition as evaluated: its text, result and the values of the paths it reads."""

    text: str
    result: Any
    values: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass
class RuleTrace:
    """Why a rule matched, or the first condition that failed and its actual values."""

    id: str
    description: str
    priority: int
    matched: bool
    conditions: list[ConditionTrace]
    failed: ConditionTrace | None = None


def path_values(cond: Condition, env: dict[str, Any]) -> dict[str, Any]:
    """The value of every top-level path a condition reads (loop variables excluded)."""
    from engine.lang.semantics import compile_node

    vals: dict[str, Any] = {}
    bound: set[str] = set()
    for n in walk(cond.node):
        if hasattr(n, "var"):
            bound.add(n.var)  # comprehension variables have no value outside their loop
        if isinstance(n, Path) and n.full and n.full[0] not in bound:
            key = ".".join(n.full)
            if key not in vals:
                vals[key] = to_json_value(compile_node(n)(env))
    return vals


def trace_rule(rule: Rule, env: dict[str, Any]) -> RuleTrace:
    conds, failed = [], None
    for c in rule.conditions:
        result = truth(c.fn(env))
        ct = ConditionTrace(c.text, result, path_values(c, env), c.span.line if c.span else 0)
        conds.append(ct)
        if result is not True and failed is None:
            failed = ct
            break
    return RuleTrace(rule.id, rule.description, rule.priority, failed is None, conds, failed)


def explain_rules(rs: CompiledRuleset, env: dict[str, Any]) -> list[RuleTrace]:
    """A trace for every rule of the ruleset, matched or not."""
    return [trace_rule(r, env) for r in rs.rules]
