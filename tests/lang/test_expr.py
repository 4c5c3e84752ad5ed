"""The expression parser (`engine/lang/expr.py`): what it accepts, what it rejects and where.

Every rejection is checked by its diagnostic code and its exact position (line and
column of the caret), because analysts see that position under their source line.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DiagnosticSink, Span
from engine.lang import expr as E
from engine.lang.checker import Checker, Scope
from engine.lang.expr import parse_expr, render
from engine.lang.semantics import compile_node
from engine.lang.types import BOOLEAN, DATE, NUMBER, STRING, Type, list_of, ref
from tests.rulesets import mini_workspace

# Expressions are placed as if they started at line 7, column 11 of a rule file.
LINE, COL = 7, 11
BASE = Span("rules/r.yaml", LINE, COL)


def parse(text: str):
    sink = DiagnosticSink()
    node = parse_expr(text, BASE, sink)
    return node, sink.items


def ok(text: str) -> E.Node:
    node, diags = parse(text)
    assert diags == [], diags
    assert node is not None
    return node


# -- accepted syntax ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,canonical", [
    ("case.amount", "case.amount"),
    ("invoice.vendor.status", "invoice.vendor.status"),
    ("(invoice.vendor).status", "invoice.vendor.status"),
    ("a == 1", "a == 1"),
    ("a != 'x'", 'a != "x"'),
    ("a < 1", "a < 1"),
    ("a <= 1.5", "a <= 1.5"),
    ("a > -2", "a > -2"),
    ("a >= 0", "a >= 0"),
    ("0 < x <= 10", "(0 < x and x <= 10)"),
    ("a == b == c", "(a == b and b == c)"),
    ("1 < a < b < 9", "(1 < a and a < b and b < 9)"),
    ("a and b", "(a and b)"),
    ("a or b", "(a or b)"),
    ("not a", "not (a)"),
    ("not a and b or c", "((not (a) and b) or c)"),
    ("a and (b or c)", "(a and (b or c))"),
    ("a and b and c", "(a and b and c)"),
    ("x in [1, 2]", "x in [1, 2]"),
    ("x in (1, 2)", "x in [1, 2]"),
    ("x not in ['a', 'b']", 'x not in ["a", "b"]'),
    ("'ab' in name", '"ab" in name'),
    ("a + b * c - d / e % f", "((a + (b * c)) - ((d / e) % f))"),
    ("(a + b) * c", "((a + b) * c)"),
    ("-x", "-(x)"),
    ("-3", "-3"),
    ("- 3.5", "-3.5"),
    ("-(-3)", "3"),
    ("+x", "x"),
    ("-(a + b)", "-((a + b))"),
    ("[]", "[]"),
    ("[1, 'a', null, true]", '[1, "a", null, true]'),
    ("[[1], [2]]", "[[1], [2]]"),
    ("lower(name)", "lower(name)"),
    ("days_between(a, today())", "days_between(a, today())"),
    ("coalesce(a, b, 0)", "coalesce(a, b, 0)"),
    ("min(a, b)", "min(a, b)"),
    ('ask("dup", invoice=case.invoice)', 'ask("dup", invoice=case.invoice)'),
    ("sum(xs)", "sum(xs)"),
    ("all(l.q <= l.r for l in inv.lines)", "all(l.q <= l.r for l in inv.lines)"),
    ("any(l.q > 0 for l in inv.lines if l.r > 1)", "any(l.q > 0 for l in inv.lines if l.r > 1)"),
    ("sum(l.amount for l in lines if l.ok)", "sum(l.amount for l in lines if l.ok)"),
    ("count(x for x in xs)", "count(x for x in xs)"),
    ("min(x.a for x in xs)", "min(x.a for x in xs)"),
    ("max(x.a for x in xs)", "max(x.a for x in xs)"),
    ("first(p for p in approvers if p.limit >= 10)", "first(p for p in approvers if p.limit >= 10)"),
    ("[l.product for l in lines]", "list(l.product for l in lines)"),
    ("[l.product for l in lines if l.q > 0]", "list(l.product for l in lines if l.q > 0)"),
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("x == null", "x == null"),
    ('"a" "b"', '"ab"'),
    ('"it\'s"', '"it\'s"'),
    ("1e3", "1000.0"),
    ("  a == 1  ", "a == 1"),
])
def test_accepted_syntax_and_canonical_render(text, canonical):
    assert render(ok(text)) == canonical


@pytest.mark.parametrize("spellings", [
    ["a == 1", "a==1", "  a  ==  1", "(a == 1)", "((a)) == (1)"],
    ["x in [1, 2]", "x in (1, 2)", "x in [1,2,]"],
    ['s == "x"', "s == 'x'"],
    ["1 + 2 * 3", "1 + (2 * 3)"],
    ["not a", "not (a)", "not(a)"],
    ["a and b", "(a) and (b)"],
    ["all(x > 0 for x in xs)", "all((x > 0) for x in xs)"],
    ["[x.a for x in xs]", "list(x.a for x in xs)"],
])
def test_equivalent_spellings_render_identically(spellings):
    assert len({render(ok(s)) for s in spellings}) == 1


def test_node_kinds():
    assert isinstance(ok("a.b.c"), E.Path) and ok("a.b.c").steps == ("b", "c")
    assert isinstance(ok("a + 1"), E.Arith)
    assert isinstance(ok("a in [1]"), E.Compare) and ok("a in [1]").op == "in"
    assert ok("a not in [1]").op == "not in"
    chain = ok("0 < x <= 10")
    assert isinstance(chain, E.BoolOp) and chain.op == "and" and [c.op for c in chain.items] == ["<", "<="]
    # the middle operand of a chain is the same node on both sides (evaluated once per side)
    assert chain.items[0].right is chain.items[1].left
    gen = ok("sum(l.a for l in xs if l.b)")
    assert isinstance(gen, E.Comprehension) and (gen.kind, gen.var) == ("sum", "l") and gen.cond is not None
    lc = ok("[l.a for l in xs]")
    assert isinstance(lc, E.Comprehension) and lc.kind == "list" and lc.cond is None
    call = ok('ask("q", x=1)')
    assert isinstance(call, E.Call) and call.name == "ask" and set(call.kwargs) == {"x"}
    assert ok("true").value is True and ok("false").value is False and ok("null").value is None
    assert ok("-3").value == -3 and isinstance(ok("-x"), E.Unary)


def test_spans_of_nodes_point_into_the_file():
    node = ok("a.b == 10")
    assert (node.span.line, node.span.col, node.span.end_col) == (LINE, COL, COL + 9)
    assert (node.left.span.col, node.left.span.end_col) == (COL, COL + 3)
    assert (node.right.span.col, node.right.span.end_col) == (COL + 7, COL + 9)
    call = ok("x == lower(s)")
    assert (call.right.name_span.col, call.right.name_span.end_col) == (COL + 5, COL + 10)


def test_leading_whitespace_shifts_columns():
    node = ok("   a == 1")
    assert node.span.col == COL + 3


# -- rejected syntax: code and exact column -------------------------------------------------------

@pytest.mark.parametrize("text,code,offset,width", [
    # unparseable text: expr_syntax, the caret where Python's parser stopped
    ("a = 1", "expr_syntax", 2, 1),
    ("a && b", "expr_syntax", 3, 1),
    ("x > > 1", "expr_syntax", 4, 1),
    ("a b", "expr_syntax", 2, 1),
    ("(a", "expr_syntax", 0, 1),
    ("f(a,,b)", "expr_syntax", 4, 1),
    ("x == 1;", "expr_syntax", 6, 1),
    ("import os", "expr_syntax", 0, 1),
    ("case.x == 'a", "expr_syntax", 10, 1),
    ("x := 1", "expr_syntax", 2, 1),
    # forbidden constructs: expr_forbidden, the caret under the whole construct
    ("x[0]", "expr_forbidden", 0, 4),
    ("case.lines[0].amount > 1", "expr_forbidden", 0, 13),
    ("lambda: 1", "expr_forbidden", 0, 9),
    ("a if b else c", "expr_forbidden", 0, 13),
    ("x == (a if b else c)", "expr_forbidden", 6, 13),
    ("x.lower()", "expr_forbidden", 0, 9),
    ("lower(x) == y.upper()", "expr_forbidden", 12, 9),
    ("f(**kw)", "expr_forbidden", 0, 7),
    ("f(*a)", "expr_forbidden", 2, 2),
    ("x is None", "expr_forbidden", 0, 9),
    ("x is not null", "expr_forbidden", 0, 13),
    ("x ** 2", "expr_forbidden", 0, 6),
    ("x << 1", "expr_forbidden", 0, 6),
    ("x // 2", "expr_forbidden", 0, 6),
    ("~x", "expr_forbidden", 0, 2),
    ("{1: 2}", "expr_forbidden", 0, 6),
    ("{1, 2}", "expr_forbidden", 0, 6),
    ("1j", "expr_forbidden", 0, 2),
    ('b"x"', "expr_forbidden", 0, 4),
    ('f"x{y}"', "expr_forbidden", 0, 7),
    ("...", "expr_forbidden", 0, 3),
    ("(x for x in xs)", "expr_forbidden", 0, 15),
    ("lower(x for x in xs)", "expr_forbidden", 0, 20),
    ("all(x for x in xs for y in ys)", "expr_forbidden", 3, 27),
    ("all(x for x in xs if a if b)", "expr_forbidden", 26, 1),
    ("count(x for (a, b) in xs)", "expr_forbidden", 12, 6),
    ("f(a)(b)", "expr_forbidden", 0, 7),
    ("().__class__", "expr_forbidden", 0, 12),
    ('"abc".upper()', "expr_forbidden", 0, 13),
])
def test_rejected_syntax_code_and_column(text, code, offset, width):
    node, diags = parse(text)
    assert node is None
    assert len(diags) >= 1
    d = diags[0]
    assert d.code == code, d
    assert (d.span.file, d.span.line, d.span.col) == ("rules/r.yaml", LINE, COL + offset), d
    assert d.span.end_col - d.span.col == width, d
    assert d.severity.value == "error"


@pytest.mark.parametrize("text,message,help_", [
    ("a = 1", "cannot parse expression: invalid syntax", "compare with `==`, not `=`"),
    ("a && b", "cannot parse expression: invalid syntax", "use `and` / `or`"),
    ("a || b", "cannot parse expression: invalid syntax", "use `and` / `or`"),
    ("x[0]", "indexing is not supported", "use `first(...)`, `min(...)` or a quantifier"),
    ("a if b else c", "conditional expressions are not supported", "write two rules, or use `coalesce(...)`"),
    ("x.lower()", "only builtin functions can be called",
     "methods are not available; use builtins such as `lower(x)`"),
    ("x is None", "`is` is not supported", "use `==` and `!=` (also with `null`)"),
    ("x ** 2", "unsupported operator in `x ** 2`", "arithmetic supports + - * / %"),
    ("all(x for x in xs for y in ys)", "one `for` per generator", "nest a second quantifier instead"),
    ("lower(x for x in xs)", "`lower` does not take a generator",
     "generators work with `all`, `any`, `sum`, `count`, `min`, `max`, `first`, `list`"),
])
def test_rejection_messages_and_help(text, message, help_):
    _node, diags = parse(text)
    assert (diags[0].message, diags[0].help) == (message, help_)


def test_empty_expression():
    node, diags = parse("   ")
    assert node is None
    assert [(d.code, d.message, d.span.line, d.span.col) for d in diags] == [
        ("expr_syntax", "empty expression", LINE, COL)]


@pytest.mark.parametrize("text,code,col", [
    ("(a ==\n== b)", "expr_syntax", 1),
    ("(a and\n  b.c[0])", "expr_forbidden", 3),
])
def test_multi_line_text_reports_the_right_line(text, code, col):
    """On a continuation line the column counts from the start of that line of the text."""
    _node, diags = parse(text)
    assert [(d.code, d.span.line, d.span.col) for d in diags] == [(code, LINE + 1, col)]


def test_every_forbidden_construct_in_one_expression_is_reported():
    _node, diags = parse("x[0] == 1 and y.lower() == 2")
    assert [(d.code, d.span.col - COL) for d in diags] == [("expr_forbidden", 0), ("expr_forbidden", 14)]


@pytest.mark.parametrize("text,offset,help_", [
    ("True", 0, "write `true`"),
    ("x == False", 5, "write `false`"),
    ("x != None", 5, "write `null`"),
])
def test_python_spelling_of_constants_is_forbidden(text, offset, help_):
    node, diags = parse(text)
    assert node is None
    assert [(d.code, d.span.col - COL, d.help) for d in diags] == [("expr_forbidden", offset, help_)]


@pytest.mark.parametrize("text", ["a ==", "1 +", "x in"])
def test_incomplete_expression_points_at_its_end(text):
    _node, diags = parse(text)
    assert diags[0].code == "expr_syntax"
    assert diags[0].span.col == COL + len(text)


@pytest.mark.parametrize("text", ["-" * 1000 + "1", "+".join(["1"] * 3000)])
def test_deeply_nested_expression_is_a_diagnostic_not_a_crash(text):
    node, diags = parse(text)
    assert node is None
    assert diags and diags[0].code in ("expr_syntax", "expr_forbidden")


@pytest.mark.parametrize("text,offset", [("x < 1e999", 4), ("x > -1e999", 5), ("x == " + "9" * 400, 5)])
def test_a_number_literal_that_is_not_finite_is_forbidden(text, offset):
    """`1e999` is infinity to Python; a literal must be a finite number (matchers agree on those)."""
    node, diags = parse(text)
    assert node is None
    assert [(d.code, d.span.col - COL) for d in diags] == [("expr_forbidden", offset)]
    assert "too large" in diags[0].message


def test_a_nul_character_is_a_diagnostic_not_a_crash():
    node, diags = parse("x == 1\x00")
    assert node is None and [d.code for d in diags] == ["expr_syntax"]


def test_columns_count_characters_not_utf8_bytes():
    """`ast` reports byte offsets; after `é` (two bytes) the caret would drift right by one."""
    _node, diags = parse('"é" == x[0]')
    assert [(d.code, d.span.col - COL, d.span.end_col - d.span.col) for d in diags] == [("expr_forbidden", 7, 4)]


# -- render is canonical -------------------------------------------------------------------------------

_names = st.sampled_from(["a", "b.c", "case.x", "v.status"])
_atoms = st.one_of(
    _names,
    st.integers(-50, 50).map(str),
    st.sampled_from(["1.5", "0.25", "true", "false", "null", '"s"', "'t'", '"a\\"b"', '"é"']),
)


# Values (atoms, arithmetic, calls) and conditions (comparisons of values, and/or/not, quantifiers).
# A comparison or `not` nested inside a comparison or arithmetic renders ambiguously: see
# test_render_keeps_nested_comparisons_apart_from_chains; the generator keeps them at condition level.
_values = st.recursive(_atoms, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    inner.map(lambda t: f"(-{t})"),
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: f"coalesce({', '.join(xs)})"),
    st.tuples(st.sampled_from(["sum", "count", "first", "min", "max"]), inner).map(
        lambda t: f"{t[0]}({t[1]} for x in xs)"),
    st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
), max_leaves=5)
_compare = st.one_of(
    st.tuples(_values, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _values).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}"),
    st.tuples(_values, _values, _values).map(lambda t: f"{t[0]} < {t[1]} <= {t[2]}"),
    st.tuples(_values, st.sampled_from(["in", "not in"]), st.lists(_values, max_size=3)).map(
        lambda t: f"{t[0]} {t[1]} [{', '.join(t[2])}]"),
)


def _exprs():
    return st.recursive(
        _compare | _names,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
            inner.map(lambda t: f"not ({t})"),
            st.tuples(st.sampled_from(["all", "any"]), inner, inner).map(
                lambda t: f"{t[0]}({t[1]} for x in xs if {t[2]})"),
        ),
        max_leaves=6,
    )


@settings(max_examples=300, deadline=None)
@given(_exprs())
def test_render_is_a_fixed_point(text):
    """Rendering, re-parsing and rendering again gives the same text (render is canonical)."""
    once = render(ok(text))
    assert render(ok(once)) == once


@pytest.mark.parametrize("text", ["(p == q) == r", "p == (q == r)", "(a < b) == c", "(x in xs) != y",
                                  "(not a) == (not b)", "x == (not y)", "(not a) == b"])
def test_render_keeps_nested_comparisons_apart_from_chains(text):
    once = render(ok(text))
    again, diags = parse(once)
    assert diags == [], f"render gave unparseable text {once!r}"
    assert render(again) == once


# -- security: nothing reaches Python ----------------------------------------------------------------

CASE = Type("object", fields=(
    ("invoice", ref("Invoice")), ("amount", NUMBER), ("name", STRING), ("flag", BOOLEAN), ("day", DATE),
    ("tags", list_of(STRING)), ("blob", Type("any")),
))


def check(text: str):
    """Parse and type-check `text` as a condition; returns (node or None, diagnostics)."""
    ws = mini_workspace()
    sink = DiagnosticSink()
    node = parse_expr(text, BASE, sink)
    if node is not None:
        Checker(ws.schema, sink, prefixes=ws.prefixes).check_condition(node, Scope({"case": CASE}))
    return node, sink.errors


@pytest.mark.parametrize("text,code", [
    ('__import__("os").system("x")', "expr_forbidden"),
    ('__import__("os")', "unknown_name"),
    ("().__class__", "expr_forbidden"),
    ("().__class__.__bases__[0].__subclasses__()", "expr_forbidden"),
    ('open("f")', "unknown_name"),
    ('open("/etc/passwd") == 1', "unknown_name"),
    ('eval("1")', "unknown_name"),
    ('exec("import os")', "unknown_name"),
    ("compile('1', 'f', 'eval')", "unknown_name"),
    ('getattr(case, "__class__")', "unknown_name"),
    ("globals()", "unknown_name"),
    ("locals() == 1", "unknown_name"),
    ("vars(case)", "unknown_name"),
    ("type(case) == 1", "unknown_name"),
    ("case.__class__ == 1", "unknown_name"),
    ("case.__dict__ == 1", "unknown_name"),
    ("case.invoice.__class__ == 1", "unknown_property"),
    ("__builtins__ == 1", "unknown_name"),
    ("os.system == 1", "unknown_name"),
    ("lambda: os", "expr_forbidden"),
    ("[c for c in ().__class__.__base__.__subclasses__()]", "expr_forbidden"),
    ("case.name.format(1)", "expr_forbidden"),
    ("ask('x') == 1", "unknown_name"),
])
def test_dangerous_text_fails_at_parse_or_check_time(text, code):
    _node, errors = check(text)
    assert errors, f"{text!r} was accepted"
    assert errors[0].code == code


def test_unknown_fields_of_untyped_values_never_reach_python_attributes():
    """Where the checker cannot know the fields (an `any` value), evaluation reads data, not attributes."""
    for text in ("case.blob.__class__", "case.blob.__dict__", "case.blob.keys", "case.blob.a.__class__"):
        node = ok(text)
        sink = DiagnosticSink()
        Checker(mini_workspace().schema, sink).check(node, Scope({"case": CASE}))
        assert sink.errors == []
        fn = compile_node(node)
        for blob in ({"a": 1}, {"a": {"b": 2}}, object(), "text", [1, 2], 3):
            assert fn({"case": {"blob": blob}}) in (None, [])


def test_rejected_security_strings_yield_no_node():
    """A rejected expression never yields a node, so nothing can be compiled or run."""
    for text in ('__import__("os").system("x")', "().__class__", "x.lower()", "x[0]", "lambda: 1"):
        node, diags = parse(text)
        assert node is None and diags
