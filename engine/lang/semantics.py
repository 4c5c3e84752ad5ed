"""What expressions mean at run time: three-valued logic over resolved facts, and the builtins.

`null` means "unknown": a comparison with `null` is `null`, `and`/`or`/`not` follow Kleene's
logic, and a condition holds only when it is `true`. So a rule never fires on a value the
graph does not have. The durable-rules adapter is shaped to give exactly these answers,
and the differential tests hold it to them.

Expressions are compiled once to Python closures (`compile_node`); evaluating a case is
then plain function calls, with no tree walk.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

from engine.case import Entity

from .expr import Arith, BoolOp, Call, Compare, Comprehension, ListLit, Lit, Node, Path, Unary

Env = dict[str, Any]
Fn = Callable[[Env], Any]


def kind_of(v: Any) -> str | None:
    """The runtime kind of a value: number, string, boolean, date, ref, list; None for null (and NaN)."""
    if v is None:
        return None
    t = type(v)
    if t is bool:
        return "boolean"
    if t is int or (t is float and v == v):
        return "number"
    if t is str:
        return "string"
    if t is dt.date:
        return "date"
    if t is Entity:
        return "ref"
    if t is list:
        return "list"
    if t is dict:
        return "object"
    return None


def is_unknown(v: Any) -> bool:
    """Whether a value is unknown: null, or a NaN number (it orders and equals nothing)."""
    return v is None or (type(v) is float and v != v)


def _norm(v: Any) -> Any:
    return str(v.iri) if type(v) is Entity else v  # graph IRIs are an `IRI` str subclass; payload ones plain


def equal(a: Any, b: Any) -> bool | None:
    """Equality in three-valued logic; values of different kinds are unknown, not unequal."""
    if is_unknown(a) or is_unknown(b):
        return None
    a, b = _norm(a), _norm(b)
    ka, kb = kind_of(a), kind_of(b)
    if ka != kb:
        return None
    same: bool = a == b  # both of one kind: numbers, text, dates, booleans, IRIs
    return same


def order(op: str, a: Any, b: Any) -> bool | None:
    """`<`, `<=`, `>`, `>=` in three-valued logic; only numbers, strings and dates are ordered."""
    if is_unknown(a) or is_unknown(b):
        return None
    ka = kind_of(a)
    if ka != kind_of(b) or ka not in ("number", "string", "date"):
        return None
    holds: bool
    if op == "<":
        holds = a < b
    elif op == "<=":
        holds = a <= b
    elif op == ">":
        holds = a > b
    else:
        holds = a >= b
    return holds


def compare(op: str, a: Any, b: Any) -> bool | None:
    """Any comparison operator of the language."""
    if op == "==":
        return equal(a, b)
    if op == "!=":
        r = equal(a, b)
        return None if r is None else not r
    if op in ("in", "not in"):
        if a is None or b is None:
            return None
        if type(b) is str:
            if type(a) is not str:
                return None
            r = a in b
        else:
            # Kleene `or` of the equalities: an unknown element (or a kind mismatch) makes a
            # miss unknown, so `not in` never holds on a value nobody knows.
            items = b if type(b) is list else [b]
            r = or_(equal(a, x) for x in items)
        if r is None:
            return None
        return r if op == "in" else not r
    return order(op, a, b)


def truth(v: Any) -> bool | None:
    """A value as a truth value: booleans as they are, null as unknown, anything else unknown."""
    if v is True or v is False:
        return v
    return None


def and_(values: Iterable[Any]) -> bool | None:
    unknown = False
    for v in values:
        t = truth(v)
        if t is False:
            return False
        if t is None:
            unknown = True
    return None if unknown else True


def or_(values: Iterable[Any]) -> bool | None:
    unknown = False
    for v in values:
        t = truth(v)
        if t is True:
            return True
        if t is None:
            unknown = True
    return None if unknown else False


# Numbers lie within ±MAX_NUMBER: literals and case numbers are checked against it, and an
# arithmetic result beyond it is unknown. Python's integers are exact and unbounded, so without
# the bound chained squares (`d1: d0 * d0`, `d2: d1 * d1`, ...) double their digits at each step:
# minutes of work, then an integer too long to write. Within the bound each step is cheap.
MAX_NUMBER = sys.float_info.max
_MAX_INT = int(MAX_NUMBER)
_INF = math.inf


def _too_big(x: Any) -> bool:
    """Whether `x` is an integer beyond the range of numbers."""
    return type(x) is int and not -_MAX_INT <= x <= _MAX_INT


def _in_range(r: Any, *operands: Any) -> Any:
    """A number result `r`, or None when it is no number (NaN), an integer beyond the range of
    numbers, or a float that overflowed to infinity from finite operands (an infinite operand,
    from the graph, stays a number)."""
    if type(r) is int:
        return r if -_MAX_INT <= r <= _MAX_INT else None
    if -MAX_NUMBER <= r <= MAX_NUMBER:
        return r
    if math.isnan(r) or not any(x == _INF or x == -_INF for x in operands):
        return None
    return r


def arith(op: str, a: Any, b: Any) -> Any:
    """`+ - * / %` in three-valued logic; a result that is no number (NaN) or beyond the range of
    numbers (±MAX_NUMBER) is unknown."""
    if a is None or b is None or kind_of(a) != "number" or kind_of(b) != "number":
        if op == "+" and type(a) is str and type(b) is str:
            return a + b
        return None
    if ((type(a) is int and not -_MAX_INT <= a <= _MAX_INT)
            or (type(b) is int and not -_MAX_INT <= b <= _MAX_INT)):
        return None  # an integer beyond the range (the graph can hold one): not computed with
    try:
        r = _arith(op, a, b)
    except OverflowError:  # an integer too large to meet a float
        return None
    return None if r is None else _in_range(r, a, b)


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    if op == "/":
        return a / b
    return a % b


def get_step(v: Any, name: str, kind: str) -> Any:
    """One step of a path (`field`, `one` or `many`) from a value that is not a list (`get_path` maps over lists)."""
    if kind == "field":
        return v.get(name) if type(v) is dict else None
    if type(v) is not Entity:
        return None
    vals = v.props.get(name)
    if kind == "one":
        return vals[0] if vals else None
    return list(vals) if vals else []


def get_path(root: Any, steps: tuple[str, ...], kinds: tuple[str, ...]) -> Any:
    """Follow a path from a value; a step applied to a list maps over its elements (flattened)."""
    v = root
    for name, kind in zip(steps, kinds, strict=True):
        if v is None:
            return None
        if type(v) is list:
            out: list[Any] = []
            for e in v:
                x = get_step(e, name, kind) if e is not None else None
                if x is None:
                    continue
                if type(x) is list:
                    out.extend(x)
                else:
                    out.append(x)
            v = out
        else:
            v = get_step(v, name, kind)
    return v


def _nonnull(xs: Any) -> list[Any]:
    if xs is None:
        return []
    if type(xs) is not list:
        xs = [xs]
    return [x for x in xs if not is_unknown(x)]


def _agg_min(xs: list[Any]) -> Any:
    xs = _nonnull(xs)
    if not xs:
        return None
    k = kind_of(xs[0])
    if k not in ("number", "string", "date") or any(kind_of(x) != k for x in xs):
        return None
    return min(xs)


def _agg_max(xs: list[Any]) -> Any:
    xs = _nonnull(xs)
    if not xs:
        return None
    k = kind_of(xs[0])
    if k not in ("number", "string", "date") or any(kind_of(x) != k for x in xs):
        return None
    return max(xs)


def _agg_sum(xs: Any) -> Any:
    if is_unknown(xs):
        return None  # the sum of an unknown list is unknown, not 0
    xs = _nonnull(xs)
    if any(kind_of(x) != "number" for x in xs):
        return None
    if any(_too_big(x) for x in xs):
        return None
    try:
        r = sum(xs) if xs else 0
    except OverflowError:
        return None
    return _in_range(r, *xs)


def _count(xs: Any) -> Any:
    return None if is_unknown(xs) else len(_nonnull(xs))


def _date(s: Any) -> Any:
    if type(s) is dt.date:
        return s
    if type(s) is not str:
        return None
    try:
        return dt.date.fromisoformat(s[:10])
    except ValueError:
        return None


def _days_between(a: Any, b: Any) -> Any:
    a, b = _date(a), _date(b)
    if a is None or b is None:
        return None
    return (b - a).days


def _len(x: Any) -> Any:
    if type(x) in (str, list):
        return len(x)
    return None


def _str_fn(f: Callable[..., Any]) -> Callable[..., Any]:
    def g(*args: Any) -> Any:
        if any(type(a) is not str for a in args):
            return None
        return f(*args)
    return g


def _round(x: Any, digits: Any = 0) -> Any:
    if kind_of(x) != "number" or kind_of(digits) != "number" or not -400 <= digits <= 400:
        return None
    try:
        return _in_range(round(x, int(digits)), x)
    except OverflowError:  # `round(1.7e308, -308)`: beyond the range of numbers
        return None


def _abs(x: Any) -> Any:
    return abs(x) if kind_of(x) == "number" else None


def _coalesce(*xs: Any) -> Any:
    for x in xs:
        if not is_unknown(x):
            return x
    return None


def _exists(x: Any) -> bool:
    if type(x) is list:
        return len(_nonnull(x)) > 0
    return not is_unknown(x)


def _first(xs: Any) -> Any:
    xs = _nonnull(xs)
    return xs[0] if xs else None


# Pure builtins: name -> implementation. Signatures (for the type checker) are in `check.py`.
PURE_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "lower": _str_fn(str.lower),
    "upper": _str_fn(str.upper),
    "contains": _str_fn(lambda s, sub: sub in s),
    "startswith": _str_fn(lambda s, p: s.startswith(p)),
    "endswith": _str_fn(lambda s, p: s.endswith(p)),
    "abs": _abs,
    "round": _round,
    "days_between": _days_between,
    "date": _date,
    "exists": _exists,
    "coalesce": _coalesce,
    "sum": _agg_sum,
    "count": _count,
    "min": lambda *xs: _agg_min(list(xs[0]) if len(xs) == 1 and type(xs[0]) is list else list(xs)),
    "max": lambda *xs: _agg_max(list(xs[0]) if len(xs) == 1 and type(xs[0]) is list else list(xs)),
    "all": lambda xs: and_(_nonnull_keep(xs)),
    "any": lambda xs: or_(_nonnull_keep(xs)),
    "first": _first,
}


def _nonnull_keep(xs: Any) -> list[Any]:
    if xs is None:
        return [None]
    return xs if type(xs) is list else [xs]


TODAY = "__today__"  # the env key holding the decision date


def compile_node(node: Node, derived: dict[str, Callable[..., Any]] | None = None) -> Fn:
    """Compile a checked expression to a closure `f(env) -> value` with three-valued logic.

    `derived` supplies the graph functions (`ask`, `approval_chain`, ...) that only the
    resolver may call; they receive the env as their first argument.
    """
    derived = derived or {}

    def c(n: Node) -> Fn:
        if isinstance(n, Lit):
            v = n.value
            return lambda env: v
        if isinstance(n, Path):
            full = n.full or (n.root, *n.steps)
            root, steps, kinds = full[0], tuple(full[1:]), n.kinds
            if not steps:
                return lambda env: env.get(root)
            if len(steps) == 1:
                s0, k0 = steps[0], kinds[0]
                return lambda env: (None if (r := env.get(root)) is None
                                    else get_path(r, steps, kinds) if type(r) is list else get_step(r, s0, k0))
            return lambda env: get_path(env.get(root), steps, kinds)
        if isinstance(n, ListLit):
            items = [c(i) for i in n.items]
            return lambda env: [f(env) for f in items]
        if isinstance(n, Unary):
            f = c(n.operand)
            if n.op == "not":
                return lambda env: (None if (t := truth(f(env))) is None else not t)
            return lambda env: (-x if kind_of(x := f(env)) == "number" else None)
        if isinstance(n, Arith):
            fl, fr, op = c(n.left), c(n.right), n.op
            return lambda env: arith(op, fl(env), fr(env))
        if isinstance(n, Compare):
            fl, fr, op = c(n.left), c(n.right), n.op
            if op == "==":
                return lambda env: equal(fl(env), fr(env))
            if op in ("<", "<=", ">", ">="):
                return lambda env: order(op, fl(env), fr(env))
            return lambda env: compare(op, fl(env), fr(env))
        if isinstance(n, BoolOp):
            fs = [c(i) for i in n.items]
            if n.op == "and":
                return lambda env: and_(f(env) for f in fs)
            return lambda env: or_(f(env) for f in fs)
        if isinstance(n, Comprehension):
            return _compile_comprehension(n, c)
        if isinstance(n, Call):
            args = [c(a) for a in n.args]
            if n.name == "today":
                return lambda env: env.get(TODAY)
            if n.name in derived:
                fn = derived[n.name]
                kwargs = {k: c(v) for k, v in n.kwargs.items()}
                raw = [a.value if isinstance(a, Lit) else None for a in n.args]
                return lambda env: fn(env, raw, [f(env) for f in args], {k: f(env) for k, f in kwargs.items()})
            impl = PURE_BUILTINS[n.name]
            if len(args) == 1:
                a0 = args[0]
                return lambda env: impl(a0(env))
            return lambda env: impl(*[f(env) for f in args])
        raise TypeError(f"cannot compile {n!r}")

    return c(node)


def _compile_comprehension(n: Comprehension, c: Callable[[Node], Fn]) -> Fn:
    src, body, var = c(n.source), c(n.body), n.var
    cond = c(n.cond) if n.cond is not None else None
    kind = n.kind

    def items(env: Env) -> list[Any] | None:
        xs = src(env)
        if xs is None:
            return None
        if type(xs) is not list:
            xs = [xs]
        out = []
        inner = dict(env)
        for x in xs:
            if x is None:
                continue
            inner[var] = x
            if cond is not None and truth(cond(inner)) is not True:
                continue
            out.append(body(inner))
        return out

    if kind == "all":
        return lambda env: None if (xs := items(env)) is None else and_(xs)
    if kind == "any":
        return lambda env: None if (xs := items(env)) is None else or_(xs)
    if kind == "sum":
        return lambda env: None if (xs := items(env)) is None else _agg_sum(xs)
    if kind == "count":
        return lambda env: None if (xs := items(env)) is None else _count(xs)
    if kind == "min":
        return lambda env: None if (xs := items(env)) is None else _agg_min(xs)
    if kind == "max":
        return lambda env: None if (xs := items(env)) is None else _agg_max(xs)
    if kind == "first":
        return lambda env: None if (xs := items(env)) is None else _first(xs)
    return items


def to_json_value(v: Any) -> Any:
    """A runtime value as JSON: entities as IRIs, dates as ISO strings, NaN as null."""
    if type(v) is Entity:
        return v.iri
    if type(v) is dt.date:
        return v.isoformat()
    if type(v) is float and (math.isnan(v) or math.isinf(v)):
        return None
    if type(v) is list:
        return [to_json_value(x) for x in v]
    if type(v) is dict:
        return {k: to_json_value(x) for k, x in v.items()}
    return v
