"""The condition language: a safe subset of Python expression syntax, parsed with `ast`.

Only the node kinds listed in `_convert` are accepted; there is no attribute access on
Python objects, no subscripting, no lambdas and no names outside the environment, so an
expression cannot run arbitrary code. Quantifiers and aggregates are written as calls
with a generator: ``all(l.quantity <= l.po_line.quantity for l in invoice.invoice_lines)``.
"""

from __future__ import annotations

import ast
import json
import math
import sys
from collections.abc import Callable, Iterator
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
PYTHON_CONSTANTS = {"True": "true", "False": "false", "None": "null"}
# Deeper expressions are rejected: every later stage (checker, compiler, evaluator) recurses
# once per level, and nobody writes a condition nested this deep on purpose.
MAX_DEPTH = 100
_NUMBER_RANGE = f"numbers must lie between -{sys.float_info.max:.4g} and {sys.float_info.max:.4g}"


class Node:
    """Base of expression nodes; `span` is where the node is in its source file."""

    span: Span | None
    type: Type | None = None

    def children(self) -> list[Node]:
        return []


@dataclass(eq=False)
class Lit(Node):
    value: Any
    span: Span | None = field(default=None, repr=False)


@dataclass(eq=False)
class Path(Node):
    """A dotted path: `root.step.step`; steps are checked and annotated by the compiler."""

    root: str
    steps: tuple[str, ...]
    span: Span | None = field(default=None, repr=False)
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
    span: Span | None = field(default=None, repr=False)

    def children(self) -> list[Node]:
        return list(self.items)


@dataclass(eq=False)
class Unary(Node):
    op: str  # not | -
    operand: Node
    span: Span | None = field(default=None, repr=False)

    def children(self) -> list[Node]:
        return [self.operand]


@dataclass(eq=False)
class Arith(Node):
    op: str
    left: Node
    right: Node
    span: Span | None = field(default=None, repr=False)

    def children(self) -> list[Node]:
        return [self.left, self.right]


@dataclass(eq=False)
class Compare(Node):
    op: str
    left: Node
    right: Node
    span: Span | None = field(default=None, repr=False)

    def children(self) -> list[Node]:
        return [self.left, self.right]


@dataclass(eq=False)
class BoolOp(Node):
    op: str  # and | or
    items: list[Node]
    span: Span | None = field(default=None, repr=False)

    def children(self) -> list[Node]:
        return list(self.items)


@dataclass(eq=False)
class Call(Node):
    name: str
    args: list[Node]
    span: Span | None = field(default=None, repr=False)
    name_span: Span | None = field(default=None, repr=False)
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
    span: Span | None = field(default=None, repr=False)

    def children(self) -> list[Node]:
        return [self.source, self.body] + ([self.cond] if self.cond is not None else [])


def walk(node: Node) -> Iterator[Node]:
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
        return f"({_operand(node.left)} {node.op} {_operand(node.right)})"
    if isinstance(node, Compare):
        return f"{_operand(node.left)} {node.op} {_operand(node.right)}"
    if isinstance(node, BoolOp):
        return "(" + f" {node.op} ".join(render(i) for i in node.items) + ")"
    if isinstance(node, Call):
        args = [render(a) for a in node.args] + [f"{k}={render(v)}" for k, v in node.kwargs.items()]
        return f"{node.name}(" + ", ".join(args) + ")"
    if isinstance(node, Comprehension):
        cond = f" if {render(node.cond)}" if node.cond is not None else ""
        return f"{node.kind}({render(node.body)} for {node.var} in {render(node.source)}{cond})"
    raise TypeError(node)


def _operand(node: Node) -> str:
    """An operand of a comparison or arithmetic: a comparison or `not` there needs parentheses,
    else `(p == q) == r` would read back as the chain `p == q == r`."""
    text = render(node)
    if isinstance(node, Compare) or (isinstance(node, Unary) and node.op == "not"):
        return f"({text})"
    return text


Locate = Callable[[int], tuple[int, int]]  # index in the text -> 1-based (line, column) in its file


class _Place:
    """Spans in the file for positions in the stripped source text of an expression."""

    def __init__(self, text: str, span: Span, locate: Locate | None):
        self.file = span.file
        self.src = text.strip()
        self.lead = len(text) - len(text.lstrip())
        self.lines = self.src.split("\n")
        self.starts = [0]
        for line in self.lines[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.locate = locate or _layout(text, span)

    def at(self, line: int, col: int, end_line: int | None = None, end_col: int | None = None) -> Span:
        """The span from (line, col) to (end_line, end_col), 0-based character positions in the source."""
        line = min(max(line, 0), len(self.lines) - 1)
        col = min(max(col, 0), len(self.lines[line]))
        start = self.lead + self.starts[line] + col
        fl, fc = self.locate(start)
        length = 1
        if end_line is not None and end_col is not None and end_line < len(self.lines):
            end = self.lead + self.starts[end_line] + min(end_col, len(self.lines[end_line]))
            if end > start:
                el, ec = self.locate(end - 1)
                if el == fl and ec >= fc:
                    length = ec - fc + 1
        return Span(self.file, fl, fc, fl, fc + length)

    def node(self, n: ast.AST) -> Span:
        """Where a syntax node is; `ast` reports columns in UTF-8 bytes."""
        line = getattr(n, "lineno", 1) - 1
        end_line = getattr(n, "end_lineno", line + 1) - 1
        return self.at(line, self._chars(line, getattr(n, "col_offset", 0)),
                       end_line, self._chars(end_line, getattr(n, "end_col_offset", 0)))

    def _chars(self, line: int, byte_col: int) -> int:
        if not 0 <= line < len(self.lines):
            return byte_col
        return len(self.lines[line].encode("utf-8")[:byte_col].decode("utf-8", "ignore"))


def _layout(text: str, span: Span) -> Locate:
    """Positions of a text written as is from `span` on: later lines count columns from 1."""
    def locate(i: int) -> tuple[int, int]:
        line = text.count("\n", 0, i)
        col = i - (text.rfind("\n", 0, i) + 1)
        return span.line + line, (span.col + col if line == 0 else col + 1)
    return locate


class _Converter:
    def __init__(self, text: str, place: _Place, sink: DiagnosticSink):
        self.text = text
        self.place = place
        self.sink = sink
        self.ok = True
        self.errors = 0

    def source(self, n: ast.AST) -> str:
        return ast.get_source_segment(self.text, n) or ast.unparse(n)

    def span(self, n: ast.AST) -> Span:
        return self.place.node(n)

    def fail(self, n: ast.AST, message: str, help: str | None = None, code: str = "expr_forbidden") -> Lit:
        self.ok = False
        self.errors += 1
        self.sink.error(code, message, self.span(n), help=help)
        return Lit(None, self.span(n))

    def convert(self, n: ast.AST) -> Node:
        sp = self.span(n)
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or n.value is None:
                # `True`, `False` and `None` parse as constants; the language spells them in lower case.
                return self.fail(n, f"`{n.value}` is Python spelling",
                                 help=f"write `{PYTHON_CONSTANTS[str(n.value)]}`")
            if isinstance(n.value, float) and not math.isfinite(n.value):
                return self.fail(n, f"number `{self.source(n)}` is too large", help=_NUMBER_RANGE)
            if isinstance(n.value, int) and abs(n.value) > sys.float_info.max:
                return self.fail(n, "this number is too large", help=_NUMBER_RANGE)
            if isinstance(n.value, (int, float, str)):
                return Lit(n.value, sp)
            return self.fail(n, f"unsupported literal `{ast.unparse(n)}`")
        if isinstance(n, ast.Name):
            if n.id in CONSTANTS:
                return Lit(CONSTANTS[n.id], sp)
            return Path(n.id, (), sp)
        if isinstance(n, ast.Attribute):
            n_err = self.errors
            base = self.convert(n.value)
            if self.errors > n_err:
                return base  # the step's base is already reported; one mistake, one diagnostic
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
                if (isinstance(inner, Lit) and isinstance(inner.value, (int, float))
                        and not isinstance(inner.value, bool)):
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
            for op_node, right_ast in zip(n.ops, n.comparators, strict=True):
                op = COMPARE_OPS.get(type(op_node))
                if op is None:
                    return self.fail(n, "`is` is not supported", help="use `==` and `!=` (also with `null`)")
                right = self.convert(right_ast)
                parts.append(Compare(op, left, right, sp))
                left = right
            return parts[0] if len(parts) == 1 else BoolOp("and", parts, sp)
        if isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name):
                return self.fail(n, "only builtin functions can be called",
                                 help="methods are not available; use builtins such as `lower(x)`")
            if any(k.arg is None for k in n.keywords):
                return self.fail(n, "`**` arguments are not supported")
            name_span = self.place.node(n.func)
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


def parse_expr(text: str, span: Span, sink: DiagnosticSink, *, locate: Locate | None = None) -> Node | None:
    """Parse one expression; `span` is where its text starts. Errors go to `sink`.

    `locate` maps an index in `text` to its line and column in the file, for text that is not
    written there as is (YAML escapes, folded lines); without it the text starts at `span`.
    """
    place = _Place(text, span, locate)
    src = place.src
    if not src:
        sink.error("expr_syntax", "empty expression", span)
        return None
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        offset = exc.offset or 0
        if offset <= 0:
            # Python reports offset 0 when the text ends too early: point just past its end.
            lines = src.split("\n")
            line, col = len(lines) - 1, len(lines[-1])
        else:
            col = max(offset - 1, 0)
            line = max((exc.lineno or 1) - 1, 0)
        msg = (exc.msg or "invalid syntax").lower()
        hint = None
        if "=" in src and "==" not in src and "<=" not in src and ">=" not in src and "!=" not in src:
            hint = "compare with `==`, not `=`"
        elif "&&" in src or "||" in src:
            hint = "use `and` / `or`"
        sink.error("expr_syntax", f"cannot parse expression: {msg}", place.at(line, col), help=hint)
        return None
    except (RecursionError, MemoryError):
        _too_deep(place, sink)
        return None
    except ValueError as exc:  # e.g. a NUL character
        sink.error("expr_syntax", f"cannot parse expression: {str(exc).lower()}", place.at(0, 0))
        return None
    if _depth(tree) > MAX_DEPTH:
        _too_deep(place, sink)
        return None
    conv = _Converter(src, place, sink)
    node = conv.convert(tree.body)
    return node if conv.ok else None


def _depth(tree: ast.AST) -> int:
    """How deeply the syntax tree nests, measured without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH + 1:
            stack.extend((c, d + 1) for c in ast.iter_child_nodes(node))
    return deepest


def _too_deep(place: _Place, sink: DiagnosticSink) -> None:
    sink.error("expr_forbidden", f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
               place.at(0, 0, 0, len(place.lines[0])),
               help="split it into several conditions, or name parts of it under `derived:`")
