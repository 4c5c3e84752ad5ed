"""The index matcher (`engine.match.index`) against the reference evaluator, on what is tricky.

The generated rulesets of `test_differential` hold it to the reference on the values a case
schema admits; here the same rulesets meet values of every kind on every path (the graph may
hold a value of another kind than a path's type), and single rulesets pin the corners:
booleans are not numbers, 1 == 1.0, NaN and null are unknown (`!=` included), an entity on a
text path equals its IRI but orders against nothing, contradictory atoms never hold, and the
closures run only for candidate rules, once per case.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.case import IRI, Entity
from engine.lang.semantics import TODAY, equal, kind_of, order
from engine.match import MATCHERS, make_matcher
from engine.match.index import _UNKNOWN, EQ_KEY, ORD_KEY, IndexMatcher
from engine.match.reference import match_reference
from tests.match import test_differential as td
from tests.rulesets import CLOCK, compile_ruleset

_names = (f"index{i}" for i in itertools.count())


def _compile(case: str, rules: list[list[str]], tmp_path):
    text = td._yaml_text(next(_names), case, rules).replace("on: differential", "on: index", 1)
    rs, sink = compile_ruleset(text, tmp_path / "index.yaml")
    assert rs is not None and sink.errors == [], sink.errors
    return rs


def _agree(rs, envs) -> IndexMatcher:
    m = IndexMatcher(rs)
    for env in envs:
        want = match_reference(rs, env)
        assert m.match(env) == want, env
        assert m.first_match(env) == (want[0] if want else None), env
    return m


# Values of every kind the graph or a payload can bring, on any path whatever its type.
WILD = ([None, True, False, 0, 1, 1.0, -0.0, 2, 2.5, -1, float("nan"), float("inf"), 2 ** 53 + 1, 10 ** 30, "", "a",
         "ab", "b", "B", "1", "true", "2026-01-01", "é", dt.date(2025, 12, 31), dt.date(2026, 1, 1),
         dt.date(2026, 1, 2), dt.datetime(2026, 1, 1, tzinfo=dt.UTC), [1], ["a"], [], {"n": 1}, Entity("a"),
         Entity("b"), IRI("a"), IRI("b")])


def test_value_keys_agree_with_equal_and_order():
    """`EQ_KEY` / `ORD_KEY` find a value's literal exactly where `equal` / `order` compare it."""
    literals = {"number": [0, 1, 2.5, -1, 2 ** 53], "string": ["", "a", "b", "é"], "boolean": [True, False],
                "date": [dt.date(2026, 1, 1), dt.date(2025, 12, 31)]}
    for kind, lits in literals.items():
        for v, lit in itertools.product(WILD, lits):
            assert kind_of(lit) == kind
            key = EQ_KEY[kind](v)
            assert equal(v, lit) == (None if key is _UNKNOWN else key == lit), (kind, v, lit)
            if kind in ORD_KEY:
                key = ORD_KEY[kind](v)
                assert order("<", v, lit) == (None if key is _UNKNOWN else key < lit), (kind, v, lit)


wild_payloads = st.fixed_dictionaries({}, optional={k: st.sampled_from(WILD) for k in "stnmbcd"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(rules=st.lists(td.rule_conditions, min_size=1, max_size=10), cases=st.lists(wild_payloads, min_size=6,
                                                                                      max_size=14))
def _check_wild(tmp_path, rules, cases):
    rs = td._compile(td.SCALAR_CASE, rules, tmp_path)
    _agree(rs, [{"case": payload, TODAY: CLOCK} for payload in cases])
    WILD_CHECKED["cases"] += len(cases)


WILD_CHECKED = {"cases": 0}


def test_index_and_reference_agree_on_values_of_every_kind(tmp_path):
    """Not through `validate_payload`: any value on any path, as the graph could hold it."""
    _check_wild(tmp_path)
    assert WILD_CHECKED["cases"] >= 1800


def test_booleans_are_not_numbers_and_ints_equal_floats(tmp_path):
    rs = _compile('{n: "number?", b: "boolean?"}', [["case.n == 1"], ["case.n != 1"], ["case.n >= 1"], ["case.b"],
                                                    ["not case.b"], ["case.b != true"], ["case.n == 1.0"]], tmp_path)
    m = _agree(rs, [{"case": {"n": v, "b": v}} for v in (True, False, 1, 1.0, 0, 0.0, 2)])
    assert m.match({"case": {"n": True}}) == []
    assert m.match({"case": {"n": 1.0, "b": 1}}) == ["r0", "r2", "r6"]
    assert m.match({"case": {"b": False}}) == ["r4", "r5"]


@pytest.mark.parametrize("value", [None, float("nan"), "1", [1], {"n": 1}, True, dt.date(2026, 1, 1)])
def test_an_unknown_value_holds_no_atom_not_even_a_negated_one(tmp_path, value):
    rs = _compile('{n: "number?"}', [["case.n != 1"], ["not (case.n == 1)"], ["not (case.n > 1)"], ["case.n == 1"],
                                     []], tmp_path)
    m = _agree(rs, [{"case": {"n": value}}, {"case": {}}, {}])
    assert m.match({"case": {"n": value}}) == ["r4"]  # only the rule without conditions


def test_text_and_dates_order_as_in_python(tmp_path):
    rs = _compile('{s: "string?", d: "date?"}', [['case.s < "b"'], ['case.s >= "é"'], ['case.s > "B"', 'case.s <= "a"'],
                                                 ['case.d < "2026-01-01"'], ['case.d >= "2026-01-01"',
                                                                             'case.d != "2026-01-02"']], tmp_path)
    days = [dt.date(2025, 12, 31), dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 3, 1)]
    texts = ["", "B", "C", "a", "a\x00", "aa", "b", "z", "é", "😀", "\ud800"]
    _agree(rs, [{"case": {"s": s, "d": d}} for s, d in itertools.product(texts, days)])
    m = IndexMatcher(rs)
    assert m.match({"case": {"s": "😀", "d": dt.date(2026, 1, 2)}}) == ["r1"]


def test_an_entity_on_a_text_path_equals_its_iri_but_orders_against_nothing(tmp_path):
    """`equal` compares an entity by its IRI; `order` does not (the graph can hold a node where
    a text literal was declared)."""
    rs = _compile('{s: "string?"}', [['case.s == "a"'], ['case.s != "b"'], ['case.s >= "a"'],
                                     ['case.s == "a"', 'case.s < "z"']], tmp_path)
    m = _agree(rs, [{"case": {"s": v}} for v in (Entity("a"), Entity("b"), IRI("a"), "a")])
    assert m.match({"case": {"s": Entity("a")}}) == ["r0", "r1"]
    assert m.match({"case": {"s": IRI("a")}}) == []  # an IRI value is no text to compare


def test_contradictory_atoms_never_hold(tmp_path):
    rs = _compile('{n: "number?", s: "string?"}',
                  [["case.n == 1", "case.n == 2"], ["case.n == 1", "case.n == 1.0"], ["case.n > 2", "case.n < 1"],
                   ["case.n > 1", "case.n <= 1"], ['case.s == "a"', 'case.s != "a"'], ["case.n != 1", "case.n != 2"]],
                  tmp_path)
    m = _agree(rs, [{"case": {"n": n, "s": s}} for n, s in itertools.product([0, 1, 1.0, 2, 3, None], ["a", "b"])])
    assert m.match({"case": {"n": 1, "s": "a"}}) == ["r1"]
    assert m.match({"case": {"n": 3, "s": "a"}}) == ["r5"]


def test_a_list_where_a_scalar_is_declared_is_unknown(tmp_path):
    """`get_path` maps a step over a list: the value of a scalar path can still be a list."""
    rs = _compile('{inv: {amount: "number?"}}', [["case.inv.amount > 1"], ["case.inv.amount != 1"], []], tmp_path)
    m = _agree(rs, [{"case": {"inv": v}} for v in ([{"amount": 5}], {"amount": 5}, {"amount": [5]}, [], None)])
    assert m.match({"case": {"inv": {"amount": 5}}}) == ["r0", "r1", "r2"]
    assert m.match({"case": {"inv": [{"amount": 5}]}}) == ["r2"]


def test_what_is_indexed_and_what_stays_a_closure(tmp_path):
    """Atoms go into the index; anything else (and ordered text the compiler keeps out of
    atoms) stays a closure, evaluated only for the rules the index leaves, once per case."""
    rs = _compile('{n: "number?", m: "number?", s: "string?"}',
                  [["case.n > 1", "case.n + case.m > 3"], ["case.n <= 1", "case.n + case.m > 3"],
                   ['case.s < "a b"', "case.m == 2"], ["case.m == 2"], ["case.n > 0", "case.n + case.m > 3"]],
                  tmp_path)
    m = IndexMatcher(rs)
    assert [len(r) for r in m._rest] == [1, 1, 1, 0, 1]
    assert {".".join(pm.path) for pm in m._paths} == {"case.n", "case.m"}
    calls = []
    for rule in rs.rules:
        for c in rule.conditions:
            if c.atom is None:
                fn = c.fn
                c.fn = lambda env, fn=fn, text=c.text: calls.append(text) or fn(env)
    m = IndexMatcher(rs)
    assert m.match({"case": {"n": 2, "m": 2, "s": "a"}}) == ["r0", "r2", "r3", "r4"]
    # r1's atom failed: its closure never ran; r0 and r4 share theirs: it ran once
    assert calls == ["(case.n + case.m) > 3", 'case.s < "a b"']
    calls.clear()
    assert m.first_match({"case": {"n": 0, "m": 2, "s": "b"}}) == "r3"
    assert calls == ["(case.n + case.m) > 3", 'case.s < "a b"']


def test_make_matcher_knows_three_kinds(tmp_path):
    rs = _compile('{n: "number?"}', [["case.n > 1"]], tmp_path)
    assert [make_matcher(rs, k).name for k in MATCHERS] == ["durable", "index", "reference"]
    with pytest.raises(ValueError, match="unknown matcher `indx`"):
        make_matcher(rs, "indx")


def test_matched_ids_are_picked_alike_bit_by_bit_and_all_at_once(tmp_path):
    """Few matches are picked bit by bit, many with `itertools.compress`: the same ids either way."""
    rs = _compile('{n: "number?"}', [[f"case.n >= {i}", f"case.n != {i + 7}"] for i in range(300)], tmp_path)
    m = IndexMatcher(rs)
    assert 0 < m._few < 300
    for few in (0, m._few, 10 ** 6):
        m._few = few
        for n in (-1, 0, 3, 8, 40, 150, 299, 1000, None):
            env = {"case": {"n": n}}
            assert m.match(env) == match_reference(rs, env), (few, n)
