"""The plain-Python reference evaluator: the specification the durable-rules and index matchers must meet.

It evaluates every rule's conditions in order with the compiled closures. It is used for
explanations ("why" and "why not") and by the differential tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.lang.compiler import CompiledRuleset, Condition, Rule
from engine.lang.expr import Comprehension, Node, Path, render, walk
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
    witness: dict[str, Any] | None = None  # a failed `all`/`any`: the element that broke it




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
    return _values_of(cond.node, env)


def _values_of(node: Node, env: dict[str, Any], free: frozenset[str] = frozenset()) -> dict[str, Any]:
    from engine.lang.semantics import compile_node

    vals: dict[str, Any] = {}
    bound: set[str] = set()
    for n in walk(node):
        if hasattr(n, "var"):
            bound.add(n.var)  # comprehension variables have no value outside their loop
        if isinstance(n, Path) and n.full and (n.full[0] not in bound or n.full[0] in free):
            key = ".".join(n.full)
            if key not in vals:
                vals[key] = to_json_value(compile_node(n)(env))
    return vals


def _with_named(node: Node, named: dict[str, Node]) -> list[Node]:
    """`node`, then the named sub-expressions (`lines_matched: all(...)`) it refers to, transitively."""
    out, seen, todo = [], set(), [node]
    while todo:
        n = todo.pop(0)
        out.append(n)
        for p in walk(n):
            if isinstance(p, Path) and not p.steps and p.root in named and p.root not in seen:
                seen.add(p.root)
                todo.append(named[p.root])
    return out


def quantifier_witness(node: Node, env: dict[str, Any], named: dict[str, Node] | None = None
                       ) -> dict[str, Any] | None:
    """For a condition that did not hold: the first `all(...)` in it with an element whose test
    is false or unknown (that element, its position and the values its test read), or the first
    `any(...)` no element satisfied (how many were tried). None when the condition has neither,
    or a quantifier cannot be evaluated on its own (it reads a graph function)."""
    from engine.lang.semantics import compile_node

    inner_nodes: set[int] = set()  # quantifiers inside another read its loop variable: skipped
    for n in (x for root in _with_named(node, named or {}) for x in walk(root)):
        if id(n) in inner_nodes or not isinstance(n, Comprehension):
            continue
        inner_nodes.update(id(d) for d in walk(n) if d is not n)
        if n.kind not in ("all", "any"):
            continue
        try:
            xs = compile_node(n.source)(env)
            body = compile_node(n.body)
            cond = compile_node(n.cond) if n.cond is not None else None
            elements = [] if xs is None else xs if type(xs) is list else [xs]
            tried = 0
            for i, x in enumerate(elements):
                if x is None:
                    continue
                inner = {**env, n.var: x}
                if cond is not None and truth(cond(inner)) is not True:
                    continue
                tried += 1
                result = truth(body(inner))
                if n.kind == "all" and result is not True:
                    return {"quantifier": render(n), "kind": "all", "index": i, "element": to_json_value(x),
                            "result": result, "test": render(n.body),
                            "values": _values_of(n.body, inner, frozenset({n.var}))}
                if n.kind == "any" and result is True:
                    break
            else:
                if n.kind == "any" and xs is not None:
                    return {"quantifier": render(n), "kind": "any", "tried": tried, "test": render(n.body)}
        except Exception:  # noqa: BLE001 - an explanation never fails a decision
            return None
    return None


def trace_rule(rule: Rule, env: dict[str, Any], named: dict[str, Node] | None = None) -> RuleTrace:
    conds, failed = [], None
    for c in rule.conditions:
        result = truth(c.fn(env))
        ct = ConditionTrace(c.text, result, path_values(c, env), c.span.line if c.span else 0)
        conds.append(ct)
        if result is not True and failed is None:
            ct.witness = quantifier_witness(c.node, env, named)
            failed = ct
            break
    return RuleTrace(rule.id, rule.description, rule.priority, failed is None, conds, failed)


def explain_rules(rs: CompiledRuleset, env: dict[str, Any]) -> list[RuleTrace]:
    """A trace for every rule of the ruleset, matched or not."""
    named = {d.name: d.node for d in rs.derived if d.node is not None}
    return [trace_rule(r, env, named) for r in rs.rules]
