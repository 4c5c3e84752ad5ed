"""Three-valued semantics of the rule language (`engine/lang/semantics.py`).

`null` is unknown: comparisons with it are unknown, values of different kinds are unknown
(not unequal), `and`/`or`/`not` follow Kleene's tables, and a condition holds only when it
is `true`. Expressions are written in the language, type-checked and compiled with the real
checker and `compile_node`, then evaluated against a plain environment.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sys

import pytest

from engine.case import Entity
from engine.errors import DiagnosticSink, Span
from engine.lang import semantics as S
from engine.lang.checker import Checker, Scope
from engine.lang.expr import parse_expr
from engine.lang.semantics import (
    TODAY,
    and_,
    arith,
    compare,
    compile_node,
    equal,
    or_,
    order,
    truth,
)
from engine.lang.types import Schema, Type

T, F, N = True, False, None
D = dt.date


def _t(kind: str, elem: str | None = None) -> Type:
    if kind == "list":
        return Type("list", elem=Type(elem or "any"), optional=True)
    return Type(kind, optional=True)


CASE = Type("object", fields=(
    ("n", _t("number")), ("m", _t("number")), ("s", _t("string")), ("t", _t("string")),
    ("b", _t("boolean")), ("c", _t("boolean")), ("d", _t("date")), ("e", _t("date")),
    ("xs", _t("list", "number")), ("ss", _t("list", "string")), ("bs", _t("list", "boolean")),
    ("items", Type("list", elem=Type("object", fields=(("v", _t("number")), ("ok", _t("boolean")))),
                   optional=True)),
))


def compiled(text: str):
    sink = DiagnosticSink()
    node = parse_expr(text, Span("t.yaml", 1, 1), sink)
    assert node is not None, sink.items
    Checker(Schema(), sink).check(node, Scope({"case": CASE}))
    assert sink.errors == [], sink.errors
    return compile_node(node)


DECISION_DATE = D(2026, 11, 1)


def ev(text: str, *, today: dt.date = DECISION_DATE, **case):
    return compiled(text)({"case": case, TODAY: today})


# -- comparisons -------------------------------------------------------------------------------

OPS = ["==", "!=", "<", "<=", ">", ">="]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a,b", [(None, 1), (1, None), (None, None), (None, "x"), ("x", None),
                                 (None, D(2026, 1, 1)), (None, True)])
def test_any_comparison_with_null_is_unknown(op, a, b):
    assert compare(op, a, b) is None


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a,b", [("1", 1), (1, "1"), (True, 1), (1, True), (False, 0), (0, False),
                                 ("2026-01-01", D(2026, 1, 1)), (D(2026, 1, 1), "2026-01-01"),
                                 ("true", True), ([1], 1), (1, [1])])
def test_values_of_different_kinds_are_unknown_not_unequal(op, a, b):
    assert compare(op, a, b) is None


@pytest.mark.parametrize("op,a,b,want", [
    ("==", 1, 1.0, T), ("!=", 1, 1.0, F), ("<", 1, 1.5, T), ("<=", 2, 2.0, T), (">", -1, -2, T),
    (">=", 0.1 + 0.2, 0.3, T), ("==", 0.1 + 0.2, 0.3, F),
    ("==", "a", "a", T), ("!=", "a", "b", T), ("<", "a", "b", T), ("<", "B", "a", T), (">=", "b", "ab", T),
    ("==", True, True, T), ("!=", True, False, T), ("==", False, False, T),
    ("<", D(2026, 1, 1), D(2026, 1, 2), T), ("==", D(2026, 1, 1), D(2026, 1, 1), T),
    (">", D(2025, 12, 31), D(2026, 1, 1), F),
])
def test_comparisons_of_the_same_kind(op, a, b, want):
    assert compare(op, a, b) is want


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_booleans_and_lists_are_not_ordered(op):
    assert order(op, False, True) is None
    assert order(op, [1], [2]) is None


def test_entities_compare_with_their_iri():
    iri = "https://example.test/id/V1"
    assert equal(Entity(iri), Entity(iri)) is True
    assert equal(Entity(iri), iri) is True and equal(iri, Entity(iri)) is True
    assert equal(Entity(iri), Entity(iri + "x")) is False
    assert equal(Entity(iri), 1) is None


def test_comparisons_through_the_language():
    assert ev("case.n == 1", n=1) is True
    assert ev("case.n == 1", n=None) is None
    assert ev("case.n != 1", n=None) is None
    assert ev("case.n > case.m", n=2, m=None) is None
    assert ev("case.s == case.t", s=None, t=None) is None
    assert ev("case.d < \"2026-06-01\"", d=D(2026, 1, 1)) is True  # the literal becomes a date
    assert ev("case.d < case.e", d=D(2026, 1, 1), e=D(2025, 1, 1)) is False
    assert ev("0 < case.n <= 10", n=10) is True
    assert ev("0 < case.n <= 10", n=0) is False
    assert ev("0 < case.n <= 10", n=None) is None
    assert ev("case.n == null", n=None) is None
    assert ev("case.n != null", n=3) is None


# -- Kleene logic --------------------------------------------------------------------------------

_AND = {(T, T): T, (T, F): F, (T, N): N, (F, T): F, (F, F): F, (F, N): F, (N, T): N, (N, F): F, (N, N): N}
_OR = {(T, T): T, (T, F): T, (T, N): T, (F, T): T, (F, F): F, (F, N): N, (N, T): T, (N, F): N, (N, N): N}
_NOT = {T: F, F: T, N: N}


@pytest.mark.parametrize("a,b", list(itertools.product([T, F, N], repeat=2)))
def test_kleene_and_or_tables(a, b):
    assert and_([a, b]) is _AND[a, b]
    assert or_([a, b]) is _OR[a, b]
    assert ev("case.b and case.c", b=a, c=b) is _AND[a, b]
    assert ev("case.b or case.c", b=a, c=b) is _OR[a, b]


@pytest.mark.parametrize("a", [T, F, N])
def test_kleene_not_table(a):
    assert ev("not case.b", b=a) is _NOT[a]
    assert ev("not (case.n > 1)", n=None if a is None else (5 if a else 0)) is _NOT[a]


def test_and_or_of_many_and_of_none():
    assert and_([]) is True and or_([]) is False
    assert and_([T, T, N, T]) is None and and_([T, N, F]) is False
    assert or_([F, N, F]) is None and or_([N, F, T]) is True


@pytest.mark.parametrize("v", [1, 0, "true", "x", [], [True], D(2026, 1, 1)])
def test_non_booleans_are_unknown_as_truth_values(v):
    assert truth(v) is None
    assert and_([True, v]) is None
    assert or_([False, v]) is None


def test_boolean_connectives_stop_at_the_deciding_value():
    def then_fail(first):
        yield first
        raise AssertionError("evaluated past the deciding value")

    assert and_(then_fail(False)) is False
    assert or_(then_fail(True)) is True


# -- arithmetic ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["+", "-", "*", "/", "%"])
@pytest.mark.parametrize("a,b", [(None, 1), (1, None), (None, None), (True, 1), (1, False), ("1", 1), (1, "1"),
                                 (D(2026, 1, 1), 1), ([1], 1)])
def test_arithmetic_with_null_or_non_numbers_is_unknown(op, a, b):
    assert arith(op, a, b) is None


@pytest.mark.parametrize("op,a,b,want", [
    ("+", 1, 2, 3), ("-", 1, 2.5, -1.5), ("*", 3, 4, 12), ("/", 7, 2, 3.5), ("%", 7, 3, 1), ("%", -7, 3, 2),
    ("/", 1.0, 4, 0.25), ("+", "ab", "cd", "abcd"),
])
def test_arithmetic(op, a, b, want):
    assert arith(op, a, b) == want


@pytest.mark.parametrize("op", ["/", "%"])
@pytest.mark.parametrize("zero", [0, 0.0, -0.0])
def test_division_by_zero_is_unknown(op, zero):
    assert arith(op, 5, zero) is None
    assert ev(f"case.n {op} case.m > 0", n=5, m=zero) is None
    assert ev(f"not (case.n {op} case.m > 0)", n=5, m=zero) is None


def test_arithmetic_through_the_language():
    assert ev("case.n + case.m > 10", n=6, m=5) is True
    assert ev("case.n + case.m > 10", n=6, m=None) is None
    assert ev("-case.n < 0", n=3) is True
    assert ev("-case.n < 0", n=None) is None
    assert ev("case.n * 2 + 1 == 7", n=3) is True
    assert ev("case.n / 4 == 0.5", n=2) is True


# -- in / not in -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,case,want", [
    ("case.n in [1, 2]", {"n": 1}, T),
    ("case.n in [1, 2]", {"n": 3}, F),
    ("case.n not in [1, 2]", {"n": 3}, T),
    ("case.n not in [1, 2]", {"n": 2}, F),
    ("case.n in [1, 2]", {"n": 2.0}, T),
    ("case.n in [1, 2]", {"n": None}, N),
    ("case.n not in [1, 2]", {"n": None}, N),
    ("case.n in case.xs", {"n": 1, "xs": None}, N),
    ("case.n not in case.xs", {"n": 1, "xs": None}, N),
    ("case.n in case.xs", {"n": 1, "xs": []}, F),
    ("case.n not in case.xs", {"n": 1, "xs": []}, T),
    ("case.s in case.ss", {"s": "b", "ss": ["a", "b"]}, T),
    ("case.s in [\"a\", \"b\"]", {"s": "B"}, F),
    # on strings `in` is substring
    ("case.s in \"abcd\"", {"s": "bc"}, T),
    ("case.s in \"abcd\"", {"s": "x"}, F),
    ("case.s not in \"abcd\"", {"s": "x"}, T),
    ("\"\" in case.s", {"s": "abc"}, T),
    ("case.s in case.t", {"s": None, "t": "abc"}, N),
    ("case.s in case.t", {"s": "a", "t": None}, N),
])
def test_in_on_lists_and_strings(text, case, want):
    assert ev(text, **case) is want


def test_in_with_a_non_string_left_of_a_string_is_unknown():
    assert compare("in", 1, "a1") is None
    assert compare("not in", 1, "a1") is None


@pytest.mark.parametrize("text,case", [
    ("case.n not in [case.m, 1]", {"n": 3, "m": None}),
    ("case.n in [case.m, 1]", {"n": 3, "m": None}),
    ("case.s not in [case.t]", {"s": "a", "t": None}),
])
def test_in_with_an_unknown_element_is_unknown(text, case):
    assert ev(text, **case) is None


def test_in_with_a_kind_mismatch_is_unknown():
    assert compare("in", "a", [1, 2]) is None
    assert compare("not in", "a", [1, 2]) is None


NAN, INF = float("nan"), float("inf")


def test_nan_is_unknown():
    """A NaN number (the graph can hold `"NaN"^^xsd:double`) is unknown, like null: `NaN != 5` is
    not true, so no rule fires on it (and durable-rules, which leaves it out, agrees)."""
    assert equal(NAN, 5) is None and equal(NAN, NAN) is None and compare("!=", NAN, 5) is None
    assert order("<", NAN, 5) is None and compare("in", NAN, [1, NAN]) is None
    assert S.kind_of(NAN) is None
    assert S.PURE_BUILTINS["exists"](NAN) is False and S.PURE_BUILTINS["coalesce"](NAN, 1) == 1
    assert S.PURE_BUILTINS["count"]([1, NAN]) == 1 and S.PURE_BUILTINS["sum"]([1, NAN]) == 1


def test_arithmetic_that_is_no_number_is_unknown():
    assert arith("-", INF, INF) is None  # NaN
    assert arith("*", 10**400, 1.5) is None  # OverflowError: int too large to convert to float
    assert arith("+", INF, 1) == INF
    assert S.PURE_BUILTINS["round"](1.5, INF) is None


def test_chained_squares_are_unknown_beyond_the_range_of_numbers():
    """Regression: `d1: d0 * d0`, `d2: d1 * d1`, ... doubled an integer's digits at each step (42 s,
    then an error writing the audit). Past ±1.797e308 an arithmetic result is unknown."""
    square = compiled("case.n * case.n")
    x, got = 3, []
    for _ in range(12):
        x = square({"case": {"n": x}})
        got.append(x)
    assert got[:9] == [3 ** 2 ** k for k in range(1, 10)]  # up to 3**512 ~ 1.9e244
    assert type(got[8]) is int
    assert got[9:] == [None, None, None]  # 3**1024 ~ 3.7e488 is beyond


def test_arithmetic_beyond_the_range_of_numbers_is_unknown():
    big = int(sys.float_info.max)
    assert arith("+", big, 0) == big and arith("-", -big, 0) == -big
    assert arith("+", big, 1) is None and arith("-", -big, 1) is None
    assert arith("*", 10 ** 400, 0) is None  # an integer beyond the range (from the graph): unused
    assert arith("%", 5, 10 ** 400) is None
    # a float that overflows
    assert arith("*", 1e200, 1e200) is None and arith("/", 1e300, 1e-300) is None
    assert arith("*", INF, 2) == INF  # infinity itself is a number (the graph may hold one)
    assert S.PURE_BUILTINS["sum"]([big, big]) is None
    assert S.PURE_BUILTINS["sum"]([1e308, 1e308]) is None
    assert S.PURE_BUILTINS["sum"]([INF, 1]) == INF
    # literals are not folded when compiled: a product of two in range is computed, and unknown
    assert ev(f"{10 ** 300} * {10 ** 300} > 0") is None


def test_round_beyond_the_range_of_numbers_is_unknown():
    # Python raises OverflowError: rounded value too large to represent
    assert ev("round(case.n, -308) > 0", n=1.7e308) is None
    assert ev("round(case.n, -300) > 0", n=1.7e308) is True


# -- aggregates ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,xs,want", [
    ("sum(case.xs)", [], 0), ("sum(case.xs)", [1, 2.5], 3.5), ("sum(case.xs)", [None, 2, None], 2),
    ("count(case.xs)", [], 0), ("count(case.xs)", [1, None, 3], 2),
    ("min(case.xs)", [], None), ("min(case.xs)", [3, None, 1], 1), ("min(case.xs)", [None], None),
    ("max(case.xs)", [], None), ("max(case.xs)", [3, None, 1], 3),
    ("first(case.xs)", [], None), ("first(case.xs)", [None, 2, 1], 2),
    ("sum(x for x in case.xs)", [], 0), ("sum(x * 2 for x in case.xs)", [1, None, 2], 6),
    ("sum(x for x in case.xs if x > 1)", [1, 2, 3], 5),
    ("count(x for x in case.xs if x > 1)", [1, 2, 3, None], 2),
    ("count(x for x in case.xs)", [], 0),
    ("min(x for x in case.xs)", [], None), ("max(x for x in case.xs if x < 3)", [1, 2, 3], 2),
    ("first(x for x in case.xs if x > 1)", [1, 2, 3], 2), ("first(x for x in case.xs if x > 9)", [1, 2], None),
    ("min(case.n, case.m)", None, None),
])
def test_aggregates(text, xs, want):
    got = ev(text, xs=xs, n=None, m=None)
    assert got == want and type(got) is type(want)


def test_aggregates_of_strings_and_dates():
    assert ev("min(case.ss)", ss=["b", "a", "c"]) == "a"
    assert ev("max(x for x in case.ss)", ss=["b", "a"]) == "b"
    assert ev("min(case.d, case.e)", d=D(2026, 1, 2), e=D(2026, 1, 1)) == D(2026, 1, 1)
    assert ev("max(case.n, case.m)", n=1, m=None) == 1


def test_sum_of_a_list_with_a_non_number_is_unknown():
    assert S.PURE_BUILTINS["sum"]([1, "a"]) is None
    assert S.PURE_BUILTINS["min"]([1, "a"]) is None
    assert S.PURE_BUILTINS["max"]([True, False]) is None


def test_days_between_rejects_text_statically():
    sink = DiagnosticSink()
    node = parse_expr('days_between("2026-01-01", case.d) > 1', Span("t.yaml", 1, 1), sink)
    Checker(Schema(), sink).check(node, Scope({"case": CASE}))
    assert [d.code for d in sink.errors] == ["type_mismatch"]


def test_aggregates_over_paths_through_list_elements():
    items = [{"v": 1, "ok": True}, {"v": None, "ok": False}, {"v": 4, "ok": True}]
    assert ev("sum(case.items.v)", items=items) == 5
    assert ev("count(i for i in case.items if i.ok)", items=items) == 2
    assert ev("sum(i.v for i in case.items if i.ok)", items=items) == 5
    assert ev("all(i.v > 0 for i in case.items)", items=items) is None
    assert ev("any(i.v > 3 for i in case.items)", items=items) is True


@pytest.mark.parametrize("fn", ["sum", "count"])
def test_aggregate_of_an_unknown_list_is_unknown_in_both_forms(fn):
    assert ev(f"{fn}(x for x in case.xs)", xs=None) is None
    assert ev(f"{fn}(case.xs)", xs=None) is None


# -- quantifiers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,xs,want", [
    ("all(x > 0 for x in case.xs)", [], T),
    ("any(x > 0 for x in case.xs)", [], F),
    ("all(x > 0 for x in case.xs)", None, N),
    ("any(x > 0 for x in case.xs)", None, N),
    ("all(x > 0 for x in case.xs)", [1, 2], T),
    ("all(x > 0 for x in case.xs)", [1, -2], F),
    ("any(x > 1 for x in case.xs)", [1, 2], T),
    ("any(x > 5 for x in case.xs)", [1, 2], F),
    ("all(x > 0 for x in case.xs if x < 0)", [1, 2], T),
    ("any(x > 0 for x in case.xs if x > 5)", [1, 2], F),
    # null elements of the source are skipped, like a path mapping over a list
    ("all(x > 0 for x in case.xs)", [1, None], T),
    ("any(x > 0 for x in case.xs)", [None], F),
])
def test_quantifiers(text, xs, want):
    assert ev(text, xs=xs) is want


@pytest.mark.parametrize("bs,all_,any_", [
    ([], T, F), ([T, T], T, T), ([T, F], F, T), ([F, F], F, F), ([T, N], N, T), ([F, N], F, N), ([N], N, N),
])
def test_quantifiers_over_unknown_elements_follow_kleene(bs, all_, any_):
    assert ev("all(case.bs)", bs=bs) is all_
    assert ev("any(case.bs)", bs=bs) is any_


def test_quantifier_body_unknown_makes_all_unknown_unless_one_is_false():
    items = [{"v": 1, "ok": None}, {"v": 2, "ok": True}]
    assert ev("all(i.ok for i in case.items)", items=items) is None
    assert ev("any(i.ok for i in case.items)", items=items) is True
    assert ev("all(i.ok for i in case.items)", items=items + [{"v": 3, "ok": False}]) is False


def test_filter_unknown_excludes_the_element():
    assert ev("count(x for x in case.xs if x > case.n)", xs=[1, 2, 3], n=None) == 0


def test_loop_variable_shadows_and_does_not_leak():
    f = compiled("all(n > 0 for n in case.xs) and case.n == 5")
    assert f({"case": {"xs": [1, 2], "n": 5}}) is True


# -- dates ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,case,want", [
    ("days_between(case.d, case.e)", {"d": D(2026, 1, 1), "e": D(2026, 1, 31)}, 30),
    ("days_between(case.d, case.e)", {"d": D(2026, 1, 31), "e": D(2026, 1, 1)}, -30),
    ("days_between(case.d, case.e)", {"d": D(2024, 2, 28), "e": D(2024, 3, 1)}, 2),  # leap year
    ("days_between(case.d, case.e)", {"d": None, "e": D(2026, 1, 1)}, None),
    ("days_between(case.d, case.e)", {"d": D(2026, 1, 1), "e": None}, None),
    ("days_between(case.d, today())", {"d": D(2026, 10, 20)}, 12),
    ("days_between(date(\"2026-01-01\"), date(\"2026-01-02\"))", {}, 1),
    ("days_between(date(\"2026-01-01\"), case.d)", {"d": D(2026, 3, 1)}, 59),
    ("today()", {}, D(2026, 11, 1)),
    ("date(\"2026-02-28\") < today()", {}, True),
    ("case.d < today()", {"d": None}, None),
    ("days_between(case.d, today()) < 30", {"d": D(2026, 10, 20)}, True),
    ("days_between(case.d, today()) < 30", {"d": None}, None),
])
def test_dates(text, case, want):
    assert ev(text, **case) == want
    assert type(ev(text, **case)) is type(want)


def test_today_is_the_decision_date():
    f = compiled("days_between(case.d, today()) >= 30")
    assert f({"case": {"d": D(2026, 10, 20)}, TODAY: D(2026, 11, 1)}) is False
    assert f({"case": {"d": D(2026, 10, 20)}, TODAY: D(2026, 11, 19)}) is True
    assert f({"case": {"d": D(2026, 10, 20)}}) is None  # no decision date: unknown


@pytest.mark.parametrize("value,want", [
    ("2026-01-31", D(2026, 1, 31)), ("2026-01-31T23:59:00Z", D(2026, 1, 31)), (D(2026, 1, 31), D(2026, 1, 31)),
    ("2026-02-30", None), ("31/01/2026", None), ("", None), (20260131, None), (None, None),
])
def test_date_builtin(value, want):
    assert S.PURE_BUILTINS["date"](value) == want


# -- other builtins and null ----------------------------------------------------------------------

@pytest.mark.parametrize("text,case,want", [
    ("lower(case.s)", {"s": "AbC"}, "abc"), ("lower(case.s)", {"s": None}, None),
    ("upper(case.s)", {"s": "a"}, "A"),
    ("contains(case.s, \"b\")", {"s": "abc"}, True), ("contains(case.s, \"b\")", {"s": None}, None),
    ("startswith(case.s, \"a\")", {"s": "abc"}, True), ("endswith(case.s, \"a\")", {"s": "abc"}, False),
    ("len(case.s)", {"s": "abc"}, 3), ("len(case.xs)", {"xs": [1, None]}, 2), ("len(case.s)", {"s": None}, None),
    ("abs(case.n)", {"n": -2}, 2), ("abs(case.n)", {"n": None}, None),
    ("round(case.n)", {"n": 2.6}, 3.0), ("round(case.n, 1)", {"n": 2.46}, 2.5), ("round(case.n)", {"n": None}, None),
    ("coalesce(case.n, case.m, 0)", {"n": None, "m": None}, 0),
    ("coalesce(case.n, case.m)", {"n": None, "m": 4}, 4),
    ("exists(case.n)", {"n": 0}, True), ("exists(case.n)", {"n": None}, False),
    ("exists(case.xs)", {"xs": []}, False), ("exists(case.xs)", {"xs": [None]}, False),
    ("exists(case.xs)", {"xs": [0]}, True),
    ("not exists(case.n)", {"n": None}, True),
])
def test_builtins(text, case, want):
    got = ev(text, **case)
    assert got == want and type(got) is type(want)


def test_to_json_value():
    assert S.to_json_value({"a": [Entity("x"), D(2026, 1, 2), float("nan"), float("inf"), 1]}) == {
        "a": ["x", "2026-01-02", None, None, 1]}
