"""Type checking of expressions: every path resolved against the case schema and the ontology.

The checker annotates nodes in place (`node.type`, and for paths the expanded `full` path
and per-step `kinds`) and reports problems with "did you mean" suggestions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import DiagnosticSink, Span, suggest_help

from .expr import COMPREHENSIONS, Arith, BoolOp, Call, Compare, Comprehension, ListLit, Lit, Node, Path, Unary
from .types import ANY, BOOLEAN, DATE, NULL, NUMBER, STRING, Schema, Type, compatible, list_of, orderable


@dataclass
class Scope:
    """Names visible to an expression and what they stand for."""

    roots: dict[str, Type]  # case, derived names, params, loop variables
    aliases: dict[str, Path] = field(default_factory=dict)  # fact bindings: name -> checked path
    derived_fns: dict[str, DerivedSignature] = field(default_factory=dict)
    allow_derived_calls: bool = False

    def child(self, var: str, t: Type) -> Scope:
        roots = dict(self.roots)
        roots[var] = t
        aliases = {k: v for k, v in self.aliases.items() if k != var}
        return Scope(roots, aliases, self.derived_fns, self.allow_derived_calls)

    def names(self) -> list[str]:
        return sorted(set(self.roots) | set(self.aliases))


@dataclass
class DerivedSignature:
    """How the checker types a call to a graph function (`ask`, `approval_chain`, ...)."""

    name: str
    check: Callable[[Checker, Call, list[Type]], Type]
    doc: str = ""


def _literal_type(v: Any) -> Type:
    if v is None:
        return NULL
    if isinstance(v, bool):
        return BOOLEAN
    if isinstance(v, (int, float)):
        return NUMBER
    return STRING


class Checker:
    """Types expressions of one file against a schema; errors go to the sink."""

    def __init__(self, schema: Schema, sink: DiagnosticSink, *, prefixes: dict[str, str] | None = None):
        self.schema = schema
        self.sink = sink
        self.prefixes = prefixes or {}

    # -- entry points ---------------------------------------------------------------------
    def check_condition(self, node: Node, scope: Scope) -> Type:
        t = self.check(node, scope)
        if t.kind not in ("boolean", "any", "null"):
            self.sink.error("type_mismatch", f"a condition must be true or false, but this is {_a(t)}",
                            node.span, help=_bool_help(t))
        return t

    def check(self, node: Node, scope: Scope) -> Type:
        t = self._check(node, scope)
        node.type = t
        return t

    # -- node kinds -------------------------------------------------------------------------
    def _check(self, n: Node, scope: Scope) -> Type:
        if isinstance(n, Lit):
            return _literal_type(n.value)
        if isinstance(n, Path):
            return self._path(n, scope)
        if isinstance(n, ListLit):
            ts = [self.check(i, scope) for i in n.items]
            elem = next((t for t in ts if t.kind not in ("null",)), ANY)
            for item, t in zip(n.items, ts, strict=True):
                if not compatible(elem, t):
                    self.sink.error("type_mismatch", f"list mixes {elem} and {t}", item.span)
            return list_of(elem)
        if isinstance(n, Unary):
            t = self.check(n.operand, scope)
            if n.op == "not":
                if t.kind not in ("boolean", "any", "null"):
                    self.sink.error("type_mismatch", f"`not` needs true or false, but this is {_a(t)}",
                                    n.operand.span, help=_bool_help(t))
                return BOOLEAN
            if t.kind not in ("number", "any", "null"):
                self.sink.error("type_mismatch", f"`-` needs a number, but this is {_a(t)}", n.operand.span)
            return NUMBER
        if isinstance(n, Arith):
            lt, rt = self.check(n.left, scope), self.check(n.right, scope)
            if n.op == "+" and lt.kind == "string" and rt.kind == "string":
                return STRING
            for side, t in ((n.left, lt), (n.right, rt)):
                if t.kind not in ("number", "any", "null"):
                    self.sink.error("type_mismatch", f"`{n.op}` needs numbers, but this is {_a(t)}", side.span,
                                    help="use `sum(...)` to add up a list" if t.kind == "list" else None)
            return NUMBER
        if isinstance(n, Compare):
            return self._compare(n, scope)
        if isinstance(n, BoolOp):
            for item in n.items:
                t = self.check(item, scope)
                if t.kind not in ("boolean", "any", "null"):
                    self.sink.error("type_mismatch", f"`{n.op}` needs true or false on both sides, but this is {_a(t)}",
                                    item.span, help=_bool_help(t))
            return BOOLEAN
        if isinstance(n, Comprehension):
            return self._comprehension(n, scope)
        if isinstance(n, Call):
            return self._call(n, scope)
        raise TypeError(n)

    def _path(self, n: Path, scope: Scope) -> Type:
        props: tuple[str | None, ...]
        if n.root in scope.aliases:
            base = scope.aliases[n.root]
            full, kinds, props, t = tuple(base.full), tuple(base.kinds), tuple(base.props), base.type or ANY
        elif n.root in scope.roots:
            full, kinds, props, t = (n.root,), (), (), scope.roots[n.root]
        else:
            help_, sug = suggest_help(n.root, scope.names() + list(_KNOWN_CALLS), "names")
            self.sink.error("unknown_name", f"unknown name `{n.root}`", _head_span(n, n.root),
                            help=help_, suggestion=sug)
            return ANY
        offset = len(n.root)
        for step in n.steps:
            step_span = n.span.shifted(col=offset + 1, length=len(step)) if n.span else None
            offset += len(step) + 1
            next_t, kind, iri = self._step(t, step, step_span, n)
            if next_t is None:
                return ANY
            t = next_t
            full += (step,)
            kinds += (kind,)
            props += (iri,)
        n.full, n.kinds, n.props = full, kinds, props
        return t

    def _step(self, t: Type, step: str, span: Span | None, n: Path) -> tuple[Type | None, str, str | None]:
        if t.kind == "any":
            return ANY, "field", None
        if t.kind == "list":
            inner, kind, iri = self._step(t.elem or ANY, step, span, n)
            return (list_of(inner) if inner is not None else None), kind, iri
        if t.kind == "object":
            fields = t.field_map()
            if step in fields:
                return fields[step], "field", None
            help_, sug = suggest_help(step, fields, "fields")
            self.sink.error("unknown_name", f"unknown field `{step}` in `{n.text}`", span, help=help_, suggestion=sug)
            return None, "", None
        if t.kind == "ref":
            prop = self.schema.property_of(t.cls or "", step)
            if prop is None:
                help_, sug = suggest_help(step, self.schema.properties_of(t.cls or ""), f"properties of `{t.cls}`")
                self.sink.error("unknown_property", f"`{t.cls}` has no property `{step}`", span,
                                help=help_, suggestion=sug)
                return None, "", None
            kind = "one" if prop.functional else "many"
            return (prop.range if prop.functional else list_of(prop.range)), kind, prop.iri
        self.sink.error("type_mismatch", f"`{step}` cannot follow {_a(t)}: only graph entities and objects have "
                        "properties", span)
        return None, "", None

    def _compare(self, n: Compare, scope: Scope) -> Type:
        lt, rt = self.check(n.left, scope), self.check(n.right, scope)
        if not (self._coerce_literal(n.right, lt) and self._coerce_literal(n.left, rt)):
            return BOOLEAN  # the literal is reported; comparing with it again would repeat the mistake
        lt, rt = n.left.type or lt, n.right.type or rt
        if n.op in ("in", "not in"):
            if rt.kind == "string" and lt.kind in ("string", "any", "null"):
                return BOOLEAN
            if rt.kind not in ("list", "any", "null"):
                self.sink.error("type_mismatch", f"`{n.op}` needs a list on its right, but this is {_a(rt)}",
                                n.right.span, help='write `x in ["a", "b"]`')
            elif rt.kind == "list" and rt.elem and not compatible(lt, rt.elem):
                self.sink.error("type_mismatch", f"cannot look for {_a(lt)} in a list of {rt.elem}", n.span)
            return BOOLEAN
        for side, t in ((n.left, lt), (n.right, rt)):
            if t.kind == "list":
                self.sink.error("type_mismatch", f"`{n.op}` compares single values, but this is {_a(t)}", side.span,
                                help="use a quantifier such as `any(x == ... for x in ...)`, "
                                     "or `count(...)`/`sum(...)`")
                return BOOLEAN
        if n.op in ("==", "!="):
            if not compatible(lt, rt):
                self.sink.error("type_mismatch", f"cannot compare {_a(lt)} with {_a(rt)}", n.span)
        elif not orderable(lt, rt) and "null" not in (lt.kind, rt.kind):
            self.sink.error("type_mismatch", f"cannot order {_a(lt)} against {_a(rt)} with `{n.op}`", n.span,
                            help="`<`, `<=`, `>`, `>=` work on numbers, strings and dates of the same kind")
        return BOOLEAN

    def _coerce_literal(self, lit: Node, other: Type) -> bool:
        """A string literal compared with a date becomes a date; with an entity, an expanded IRI.

        False when the literal cannot be what it is compared with (reported here).
        """
        if not isinstance(lit, Lit) or not isinstance(lit.value, str):
            return True
        if other.kind == "date":
            try:
                lit.value = dt.date.fromisoformat(lit.value)
                lit.type = DATE
            except ValueError:
                self.sink.error("type_mismatch", f"`{lit.value}` is not a date", lit.span,
                                help="write dates as `2026-01-31`")
                return False
        elif other.kind == "ref":
            lit.value = expand_iri(lit.value, self.prefixes)
        return True

    def _comprehension(self, n: Comprehension, scope: Scope) -> Type:
        st = self.check(n.source, scope)
        if st.kind not in ("list", "any"):
            self.sink.error("type_mismatch", f"`for ... in` needs a list, but this is {_a(st)}", n.source.span,
                            help="iterate over a multi-valued property or a list field")
            elem = ANY
        else:
            elem = st.elem or ANY if st.kind == "list" else ANY
        inner = scope.child(n.var, elem)
        if n.cond is not None:
            ct = self.check(n.cond, inner)
            if ct.kind not in ("boolean", "any", "null"):
                self.sink.error("type_mismatch", f"the `if` filter must be true or false, but this is {_a(ct)}",
                                n.cond.span)
        bt = self.check(n.body, inner)
        if n.kind in ("all", "any"):
            if bt.kind not in ("boolean", "any", "null"):
                self.sink.error("type_mismatch", f"`{n.kind}` needs a condition per element, but this is {_a(bt)}",
                                n.body.span, help=f"write `{n.kind}(x.amount > 0 for x in ...)`")
            return BOOLEAN
        if n.kind == "sum":
            if bt.kind not in ("number", "any", "null"):
                self.sink.error("type_mismatch", f"`sum` adds numbers, but this is {_a(bt)}", n.body.span)
            return NUMBER
        if n.kind == "count":
            return NUMBER
        if n.kind in ("min", "max"):
            if bt.kind not in ("number", "string", "date", "any", "null"):
                self.sink.error("type_mismatch", f"`{n.kind}` needs numbers, strings or dates, but this is {_a(bt)}",
                                n.body.span)
            return bt
        if n.kind == "first":
            return bt
        return list_of(bt)

    def _call(self, n: Call, scope: Scope) -> Type:
        if n.name in scope.derived_fns:
            if not scope.allow_derived_calls:
                self.sink.error("expr_forbidden", f"`{n.name}` reads the graph and may only be used under `derived:`",
                                n.name_span, help="declare it under `derived:` and use its name here")
                return ANY
            for a in n.args:
                if not (isinstance(a, Lit) and isinstance(a.value, str)):
                    self.check(a, scope)
            for v in n.kwargs.values():
                self.check(v, scope)
            return scope.derived_fns[n.name].check(self, n, [a.type or ANY for a in n.args])
        sig = BUILTIN_SIGNATURES.get(n.name)
        if sig is None:
            help_, sug = suggest_help(n.name, list(BUILTIN_SIGNATURES) + list(scope.derived_fns), "functions")
            self.sink.error("unknown_name", f"unknown function `{n.name}`", n.name_span, help=help_, suggestion=sug)
            return ANY
        if n.kwargs:
            self.sink.error("expr_forbidden", f"`{n.name}` takes no keyword arguments", n.span)
        ts = [self.check(a, scope) for a in n.args]
        return sig(self, n, ts)

    # -- helpers for signatures ---------------------------------------------------------------
    def arity(self, n: Call, lo: int, hi: int | None = None) -> bool:
        hi = lo if hi is None else hi
        if not (lo <= len(n.args) <= hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            self.sink.error("type_mismatch", f"`{n.name}` takes {want} argument(s), got {len(n.args)}", n.span)
            return False
        return True

    def want(self, n: Call, i: int, t: Type, *kinds: str) -> None:
        if t.kind not in kinds + ("any", "null"):
            self.sink.error("type_mismatch", f"argument {i + 1} of `{n.name}` must be {' or '.join(kinds)}, "
                            f"but this is {_a(t)}", n.args[i].span)


def expand_iri(value: str, prefixes: dict[str, str]) -> str:
    """Expand `prefix:local` with the workspace prefixes; full IRIs pass through."""
    if "://" in value or value.startswith("urn:"):
        return value
    head, sep, tail = value.partition(":")
    if sep and head in prefixes:
        return prefixes[head] + tail
    return value


def _a(t: Type) -> str:
    if t.kind == "ref":
        return f"a `{t.cls}`"
    if t.kind == "list":
        return f"a list of {t.elem}"
    if t.kind == "null":
        return "null"
    return f"a {t.kind}" if t.kind != "any" else "a value"


def _bool_help(t: Type) -> str | None:
    if t.kind == "list":
        return "wrap it in `any(...)`, `all(...)` or compare `count(...)`"
    if t.kind in ("number", "string", "date"):
        return "compare it, for example `x > 0` or `x == \"approved\"`"
    return None


def _head_span(n: Path, root: str) -> Span | None:
    return n.span.shifted(length=len(root)) if n.span else None


def _sig_len(c: Checker, n: Call, ts: list[Type]) -> Type:
    if c.arity(n, 1):
        c.want(n, 0, ts[0], "string", "list")
    return NUMBER


def _sig_str(result: Type, arity: int) -> Callable[[Checker, Call, list[Type]], Type]:
    def sig(c: Checker, n: Call, ts: list[Type]) -> Type:
        if c.arity(n, arity):
            for i, t in enumerate(ts):
                c.want(n, i, t, "string")
        return result
    return sig


def _sig_num(c: Checker, n: Call, ts: list[Type]) -> Type:
    if c.arity(n, 1, 2 if n.name == "round" else 1):
        for i, t in enumerate(ts):
            c.want(n, i, t, "number")
    return NUMBER


def _sig_days_between(c: Checker, n: Call, ts: list[Type]) -> Type:
    if c.arity(n, 2):
        for i, t in enumerate(ts):
            c.want(n, i, t, "date")
    return NUMBER


def _sig_today(c: Checker, n: Call, ts: list[Type]) -> Type:
    c.arity(n, 0)
    return DATE


def _sig_date(c: Checker, n: Call, ts: list[Type]) -> Type:
    if c.arity(n, 1):
        c.want(n, 0, ts[0], "string", "date")
        a = n.args[0]
        if isinstance(a, Lit) and isinstance(a.value, str):
            try:
                dt.date.fromisoformat(a.value)
            except ValueError:
                c.sink.error("type_mismatch", f"`{a.value}` is not a date", a.span, help="write dates as `2026-01-31`")
    return DATE


def _sig_exists(c: Checker, n: Call, ts: list[Type]) -> Type:
    c.arity(n, 1)
    return BOOLEAN


def _sig_coalesce(c: Checker, n: Call, ts: list[Type]) -> Type:
    if c.arity(n, 2, 8):
        for i, t in enumerate(ts[1:], 1):
            if not compatible(ts[0], t):
                c.sink.error("type_mismatch", f"`coalesce` mixes {ts[0]} and {t}", n.args[i].span)
    return ts[0] if ts else ANY


def _sig_list_agg(c: Checker, n: Call, ts: list[Type]) -> Type:
    if n.name in ("min", "max") and len(ts) >= 2:
        for i, t in enumerate(ts):
            c.want(n, i, t, "number", "string", "date")
        return ts[0]
    if not c.arity(n, 1):
        return ANY
    t = ts[0]
    if t.kind not in ("list", "any", "null"):
        c.sink.error("type_mismatch", f"`{n.name}` needs a list, but this is {_a(t)}", n.args[0].span,
                     help=f"`{n.name}` works on a list field or a multi-valued property")
        return ANY
    elem = t.elem if t.kind == "list" and t.elem else ANY
    if n.name in ("all", "any"):
        if elem.kind not in ("boolean", "any", "null"):
            c.sink.error("type_mismatch", f"`{n.name}` of a list needs true/false items, but they are {elem}",
                         n.args[0].span, help=f"write `{n.name}(x > 0 for x in ...)`")
        return BOOLEAN
    if n.name == "sum":
        if elem.kind not in ("number", "any", "null"):
            c.sink.error("type_mismatch", f"`sum` adds numbers, but the items are {elem}", n.args[0].span)
        return NUMBER
    if n.name == "count":
        return NUMBER
    return elem


BUILTIN_SIGNATURES: dict[str, Callable[[Checker, Call, list[Type]], Type]] = {
    "len": _sig_len,
    "lower": _sig_str(STRING, 1),
    "upper": _sig_str(STRING, 1),
    "contains": _sig_str(BOOLEAN, 2),
    "startswith": _sig_str(BOOLEAN, 2),
    "endswith": _sig_str(BOOLEAN, 2),
    "abs": _sig_num,
    "round": _sig_num,
    "days_between": _sig_days_between,
    "today": _sig_today,
    "date": _sig_date,
    "exists": _sig_exists,
    "coalesce": _sig_coalesce,
    **dict.fromkeys(("sum", "count", "min", "max", "all", "any", "first"), _sig_list_agg),
}
_KNOWN_CALLS = tuple(BUILTIN_SIGNATURES)
assert set(COMPREHENSIONS) - {"list"} <= set(BUILTIN_SIGNATURES)
