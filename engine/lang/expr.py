"""The condition language: a safe subset of Python expression syntax, parsed with `ast`.

Only the node kinds listed in `_convert` are accepted; there is no attribute access on
Python objects, no subscripting, no lambdas and no names outside the environment, so an
expression cannot run arbitrary code. Quantifiers and aggregates are written as calls
with a generator: ``all(l.quantity <= l.po_line.quantity for l in invoice.invoice_lines)``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

from engine.errors import DiagnosticSink, Span

from .types import Type

COMPARE_OPS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in",
}
ARITH_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
# Calls that take a generator expression (quantifiers, aggregates, first, list).
COMPREHENSIONS = ("all", "any", "sum", "count", "min", "max", "first", "list")
CONSTANTS = {"true": True, "false": False, "null": None}


class Node:
    """Base of expression nodes; `span` is where the node is in its source file."""

    span: Span
    type: Type | None = None

    def children(self) -> list["Node"]:
        return []


@dataclass(eq=False)
class Lit(Node):
    value: Any
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]


@dataclass(eq=False)
class Path(Node):
    """A dotted path: `root.step.step`; steps are checked and annotated by the compiler."""

    root: str
    steps: tuple[str, ...]
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]
    # Filled by the compiler: the path with bindings expanded and generator variables kept.
    full: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # per step: field | one | many
    props: tuple[str | None, ...] = ()  # per step: the property IRI for graph steps

    @property
    def text(self) -> str:
        return ".".join((self.root, *self.steps))


@dataclass(eq=False)
class ListLit(Node):
    items: list[Node]
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]

    def children(self) -> list[Node]:
        return list(self.items)


@dataclass(eq=False)
class Unary(Node):
    op: str  # not | -
    operand: Node
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]

    def children(self) -> list[Node]:
        return [self.operand]


@dataclass(eq=False)
class Arith(Node):
    op: str
    left: Node
    right: Node
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]

    def children(self) -> list[Node]:
        return [self.left, self.right]


@dataclass(eq=False)
class Compare(Node):
    op: str
    left: Node
    right: Node
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]

    def children(self) -> list[Node]:
        return [self.left, self.right]


@dataclass(eq=False)
class BoolOp(Node):
    op: str  # and | or
    items: list[Node]
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]

    def children(self) -> list[Node]:
        return list(self.items)


@dataclass(eq=False)
class Call(Node):
    name: str
    args: list[Node]
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]
    name_span: Span = field(default=None, repr=False)  # type: ignore[assignment]
    kwargs: dict[str, Node] = field(default_factory=dict)

    def children(self) -> list[Node]:
        return list(self.args) + list(self.kwargs.values())


@dataclass(eq=False)
class Comprehension(Node):
    """`kind(body for var in source if cond)`; `body` is the variable itself when omitted."""

    kind: str
    var: str
    source: Node
    body: Node
    cond: Node | None
    span: Span = field(default=None, repr=False)  # type: ignore[assignment]

    def children(self) -> list[Node]:
        return [self.source, self.body] + ([self.cond] if self.cond is not None else [])


def walk(node: Node):
    """Every node of the tree, parents before children."""
    yield node
    for c in node.children():
        yield from walk(c)


def render(node: Node) -> str:
    """Canonical source text of a node (also the key that shares synthetic fields)."""
    if isinstance(node, Lit):
        v = node.value
        if v is True:
            return "true"
        if v is False:
            return "false"
        if v is None:
            return "null"
        if isinstance(v, str):
            return json.dumps(v)
        if hasattr(v, "isoformat"):
            return json.dumps(v.isoformat())
        return repr(v)
    if isinstance(node, Path):
        return ".".join(node.full) if node.full else node.text
    if isinstance(node, ListLit):
        return "[" + ", ".join(render(i) for i in node.items) + "]"
    if isinstance(node, Unary):
        return f"not ({render(node.operand)})" if node.op == "not" else f"-({render(node.operand)})"
    if isinstance(node, Arith):
        return f"({render(node.left)} {node.op} {render(node.right)})"
    if isinstance(node, Compare):
        return f"{render(node.left)} {node.op} {render(node.right)}"
    if isinstance(node, BoolOp):
        return "(" + f" {node.op} ".join(render(i) for i in node.items) + ")"
    if isinstance(node, Call):
        args = [render(a) for a in node.args] + [f"{k}={render(v)}" for k, v in node.kwargs.items()]
        return f"{node.name}(" + ", ".join(args) + ")"
    if isinstance(node, Comprehension):
        cond = f" if {render(node.cond)}" if node.cond is not None else ""
        return f"{node.kind}({render(node.body)} for {node.var} in {render(node.source)}{cond})"
    raise TypeError(node)


class _Converter:
    def __init__(self, text: str, base: Span, sink: DiagnosticSink):
        self.text = text
        self.base = base
        self.sink = sink
        self.ok = True

    def span(self, n: ast.AST) -> Span:
        line = getattr(n, "lineno", 1) - 1
        col = getattr(n, "col_offset", 0)
        end_col = getattr(n, "end_col_offset", col + 1)
        end_line = getattr(n, "end_lineno", line + 1) - 1
        length = end_col - col if end_line == line else 1
        return self.base.shifted(line=line, col=col, length=length)

    def fail(self, n: ast.AST, message: str, help: str | None = None, code: str = "expr_forbidden"):
        self.ok = False
        self.sink.error(code, message, self.span(n), help=help)
        return Lit(None, self.span(n))

    def convert(self, n: ast.AST) -> Node:
        sp = self.span(n)
        if isinstance(n, ast.Constant):
            if isinstance(n.value, (bool, int, float, str)) or n.value is None:
                return Lit(n.value, sp)
            return self.fail(n, f"unsupported literal `{ast.unparse(n)}`")
        if isinstance(n, ast.Name):
            if n.id in CONSTANTS:
                return Lit(CONSTANTS[n.id], sp)
            if n.id in ("True", "False", "None"):
                return self.fail(n, f"`{n.id}` is Python spelling",
                                 help=f"write `{ {'True': 'true', 'False': 'false', 'None': 'null'}[n.id] }`")
            return Path(n.id, (), sp)
        if isinstance(n, ast.Attribute):
            base = self.convert(n.value)
            if not isinstance(base, Path):
                return self.fail(n, "a `.` step must follow a name or another step",
                                 help="paths look like `invoice.vendor.status`")
            return Path(base.root, base.steps + (n.attr,), sp)
        if isinstance(n, (ast.List, ast.Tuple)):
            return ListLit([self.convert(e) for e in n.elts], sp)
        if isinstance(n, ast.UnaryOp):
            if isinstance(n.op, ast.Not):
                return Unary("not", self.convert(n.operand), sp)
            if isinstance(n.op, ast.USub):
                inner = self.convert(n.operand)
                if isinstance(inner, Lit) and isinstance(inner.value, (int, float)) and not isinstance(inner.value, bool):
                    return Lit(-inner.value, sp)
                return Unary("-", inner, sp)
            if isinstance(n.op, ast.UAdd):
                return self.convert(n.operand)
            return self.fail(n, "unsupported unary operator")
        if isinstance(n, ast.BinOp):
            op = ARITH_OPS.get(type(n.op))
            if op is None:
                return self.fail(n, f"unsupported operator in `{ast.unparse(n)}`",
                                 help="arithmetic supports + - * / %")
            return Arith(op, self.convert(n.left), self.convert(n.right), sp)
        if isinstance(n, ast.BoolOp):
            op = "and" if isinstance(n.op, ast.And) else "or"
            return BoolOp(op, [self.convert(v) for v in n.values], sp)
        if isinstance(n, ast.Compare):
            parts: list[Node] = []
            left = self.convert(n.left)
            for op_node, right_ast in zip(n.ops, n.comparators):
                op = COMPARE_OPS.get(type(op_node))
                right = self.convert(right_ast)
                if op is None:
                    return self.fail(n, "`is` is not supported", help="use `==` and `!=` (also with `null`)")
                parts.append(Compare(op, left, right, sp))
                left = right
            return parts[0] if len(parts) == 1 else BoolOp("and", parts, sp)
        if isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name):
                return self.fail(n, "only builtin functions can be called",
                                 help="methods are not available; use builtins such as `lower(x)`")
            if any(k.arg is None for k in n.keywords):
                return self.fail(n, "`**` arguments are not supported")
            name_span = self.base.shifted(line=n.func.lineno - 1, col=n.func.col_offset,
                                          length=len(n.func.id))
            if len(n.args) == 1 and isinstance(n.args[0], ast.GeneratorExp):
                return self.comprehension(n.func.id, n.args[0], sp, n)
            kwargs = {k.arg: self.convert(k.value) for k in n.keywords if k.arg}
            return Call(n.func.id, [self.convert(a) for a in n.args], sp, name_span, kwargs)
        if isinstance(n, ast.ListComp):
            return self.comprehension("list", n, sp, n)
        if isinstance(n, ast.GeneratorExp):
            return self.fail(n, "a generator must be the only argument of a builtin",
                             help="write `all(x > 0 for x in xs)`")
        if isinstance(n, ast.IfExp):
            return self.fail(n, "conditional expressions are not supported",
                             help="write two rules, or use `coalesce(...)`")
        if isinstance(n, ast.Subscript):
            return self.fail(n, "indexing is not supported", help="use `first(...)`, `min(...)` or a quantifier")
        return self.fail(n, f"unsupported syntax `{ast.unparse(n)}`")

    def comprehension(self, kind: str, g: ast.GeneratorExp | ast.ListComp, sp: Span, call: ast.AST) -> Node:
        if kind not in COMPREHENSIONS:
            return self.fail(call, f"`{kind}` does not take a generator",
                             help="generators work with " + ", ".join(f"`{c}`" for c in COMPREHENSIONS))
        if len(g.generators) != 1:
            return self.fail(g, "one `for` per generator", help="nest a second quantifier instead")
        gen = g.generators[0]
        if not isinstance(gen.target, ast.Name):
            return self.fail(gen.target, "the loop variable must be a plain name")
        if len(gen.ifs) > 1:
            return self.fail(gen.ifs[1], "one `if` per generator", help="combine conditions with `and`")
        cond = self.convert(gen.ifs[0]) if gen.ifs else None
        return Comprehension(kind, gen.target.id, self.convert(gen.iter), self.convert(g.elt), cond, sp)


def parse_expr(text: str, span: Span, sink: DiagnosticSink) -> Node | None:
    """Parse one expression; `span` is where its text starts. Errors go to `sink`."""
    src = text.strip()
    lead = len(text) - len(text.lstrip())
    base = span.shifted(col=lead) if lead else span
    if not src:
        sink.error("expr_syntax", "empty expression", span)
        return None
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        col = max((exc.offset or 1) - 1, 0)
        line = max((exc.lineno or 1) - 1, 0)
        msg = (exc.msg or "invalid syntax").lower()
        hint = None
        if "=" in src and "==" not in src and "<=" not in src and ">=" not in src and "!=" not in src:
            hint = "compare with `==`, not `=`"
        elif "&&" in src or "||" in src:
            hint = "use `and` / `or`"
        sink.error("expr_syntax", f"cannot parse expression: {msg}", base.shifted(line=line, col=col), help=hint)
        return None
    conv = _Converter(src, base, sink)
    node = conv.convert(tree.body)
    return node if conv.ok else None
