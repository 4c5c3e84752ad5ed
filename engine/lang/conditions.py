"""Conditions over an action's parameters: action preconditions and agent limits.

They are written like guard conditions (`params.invoice.amount <= 50000`) but see only
`params` (typed by the action) and `action`; the graph paths they read under `params` join
a plan of their own, which the verification gate resolves for every proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import DiagnosticSink, Span

from . import expr as E
from .actions import ActionSpec, RawCondition
from .checker import Scope
from .compiler import CompileContext, RulesetCompiler, TrieEdge
from .semantics import Fn, compile_node
from .types import STRING, Type


@dataclass
class ParamCondition:
    """A checked condition that a proposal's parameters must satisfy."""

    text: str
    message: str
    fn: Fn
    span: Span | None
    reads: frozenset[str] = frozenset()  # the parameters it reads (`params.NAME...`)


def params_type(spec: ActionSpec) -> Type:
    """The parameters as an object type; a parameter that is not required is optional."""
    return Type("object", fields=tuple(
        (p.name, p.type if p.required else Type(p.type.kind, p.type.cls, p.type.elem, p.type.fields, True))
        for p in spec.params.values()))


class ParamConditionCompiler:
    """Checks and compiles parameter conditions, collecting the graph paths they read."""

    def __init__(self, ctx: CompileContext, sink: DiagnosticSink, file: str):
        self._rc = RulesetCompiler(Path(file), ctx, sink)
        self.sink = sink
        self.ctx = ctx

    @property
    def plan(self) -> dict[str, TrieEdge]:
        """The trie of graph paths read under `params` by every condition compiled so far."""
        return self._rc.plan.get("params", {})

    def compile(self, raw: RawCondition, spec: ActionSpec) -> ParamCondition | None:
        node = self._rc._parse(raw.text, raw.span)
        if node is None:
            return None
        scope = Scope({"params": params_type(spec), "action": STRING})
        n_err = len(self.sink.errors)
        self._rc.checker.check_condition(node, scope)
        if len(self.sink.errors) > n_err:
            return None
        self._rc._collect_paths(node)
        from .targets import params_read

        return ParamCondition(E.render(node), raw.message, compile_node(node, self.ctx.derived_impls), raw.span,
                              frozenset(params_read(node)))

    def compile_all(self, raws: list[RawCondition], spec: ActionSpec) -> list[ParamCondition]:
        out = []
        for raw in raws:
            c = self.compile(raw, spec)
            if c is not None:
                out.append(c)
        return out


def holds(cond: ParamCondition, env: dict[str, Any]) -> bool | None:
    """True, False, or None when unknown (a value is missing) — callers treat None as not holding."""
    from .semantics import truth

    return truth(cond.fn(env))
