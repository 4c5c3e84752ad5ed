"""The interval index: range conditions reach durable-rules as per-case interval fields.

Every test compares the durable-rules matcher (and most the index matcher, which uses the
same segments) with the reference evaluator on the same env (the specification), and checks
that no case fell back to the reference evaluator (a fallback would hide a disagreement).
Boundaries: `<` against `<=` at an equal bound, values
exactly on, between and beyond the bounds, ints against floats, ±2**53 and beyond, dates,
text, unknown values (missing, null, NaN, another kind than the path's type).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.lang.payload import validate_payload
from engine.lang.semantics import TODAY
from engine.match import durable
from engine.match.durable import RULE_BUDGET, DurableMatcher
from engine.match.index import IndexMatcher
from engine.match.intervals import PathIndex
from engine.match.reference import match_reference
from tests.match import test_differential as td
from tests.rulesets import CLOCK, compile_ruleset, mini_workspace

_names = (f"intervals{i}" for i in itertools.count())
OPS = ("<", "<=", ">", ">=")


def _compile(case: str, rules: list[list[str]], tmp_path):
    text = td._yaml_text(next(_names), case, rules).replace("on: differential", "on: intervals", 1)
    rs, sink = compile_ruleset(text, tmp_path / "intervals.yaml")
    assert rs is not None and sink.errors == [], sink.errors
    return rs


def _agree(rs, values: list, field: str = "n") -> DurableMatcher:
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    for v in values:
        env = {"case": {} if v is _MISSING else {field: v}}
        assert matcher.match(env) == match_reference(rs, env) == index.match(env), repr(v)
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback
    return matcher


_MISSING = object()
UNKNOWN = [_MISSING, None, float("nan")]


def test_segments_tell_a_bound_from_the_values_beside_it():
    px = PathIndex(("case", "n"), [1, 2.5, 7])
    values = (0, 1, 1.0, 1.5, 2.5, 3, 7, 8, -math.inf, math.inf)
    assert [px.segment(v) for v in values] == [0, 1, 1, 2, 3, 4, 5, 6, 0, 6]
    assert px.run("<", 2.5) == (0, 2) and px.run("<=", 2.5) == (0, 3)
    assert px.run(">", 2.5) == (4, 6) and px.run(">=", 2.5) == (3, 6)


def test_strict_and_non_strict_comparisons_at_an_equal_bound(tmp_path):
    rs = _compile('{n: "number?"}', [[f"case.n {op} 10"] for op in OPS]
                  + [["case.n >= 10", "case.n <= 10"], ["case.n > 10", "case.n <= 10"],
                     ["case.n >= 5", "case.n < 10"], ["case.n > 5", "case.n <= 10"], ["case.n >= 10", "case.n < 10.5"]],
                  tmp_path)
    m = _agree(rs, [4, 5, 5.0, 5.5, 9.999, 10, 10.0, -0.0, 10.25, 10.5, 11] + UNKNOWN)
    assert m.match({"case": {"n": 10}}) == ["r1", "r3", "r4", "r7", "r8"]
    assert m.never == ["r5"]  # `> 10 and <= 10` can never hold: in no network, and never matched


def test_ints_floats_and_integers_beyond_2_to_53(tmp_path):
    big = 2 ** 53
    rs = _compile('{n: "number?"}', [[f"case.n > {big}"], [f"case.n >= {big}"], [f"case.n < {big}.0"],
                                     [f"case.n <= -{big}"], [f"case.n > -{big}", "case.n < 0.1"],
                                     ["case.n >= 1", "case.n < 1.0000000000000002"], ["case.n > 0.30000000000000004"]],
                  tmp_path)
    _agree(rs, [big, big + 1, float(big), big - 1, -big, -big - 1, 2 ** 63, 10 ** 30, -(10 ** 30), math.inf, -math.inf,
                1, 1.0, 1.0000000000000002, 0.1, 0.3, 0.1 + 0.2, 0] + UNKNOWN)


def test_dates(tmp_path):
    rs = _compile('{d: "date?"}', [['case.d < "2026-01-01"'], ['case.d <= "2026-01-01"'], ['case.d >= "2026-01-01"',
                                   'case.d < "2026-02-01"'], ['case.d > "2026-01-31"']], tmp_path)
    days = [dt.date(2025, 12, 31), dt.date(2026, 1, 1), dt.date(2026, 1, 15), dt.date(2026, 1, 31),
            dt.date(2026, 2, 1), dt.date(2026, 3, 1)]
    _agree(rs, days + UNKNOWN, field="d")


def test_text(tmp_path):
    rs = _compile('{s: "string?"}', [['case.s < "b"'], ['case.s <= "b"'], ['case.s >= "a"', 'case.s < "ab"'],
                                     ['case.s > "é"'], ['case.s == "b"'], ['case.s != "a"']], tmp_path)
    _agree(rs, ["", "a", "a\"b", "aa", "ab", "b", "B", "ba", "z", "é", "😀", "a\x01", "\ud800"] + UNKNOWN, field="s")


@pytest.mark.parametrize("value", ["5", True, [5], {"n": 5}, dt.date(2026, 1, 1)])
def test_a_value_of_another_kind_is_unknown(tmp_path, value):
    """The graph may hold a value of another kind than the path's type: every range test on it is false."""
    rs = _compile('{n: "number?"}', [["case.n > 1"], ["case.n <= 100"], ["not (case.n > 1)"]], tmp_path)
    _agree(rs, [value])
    assert match_reference(rs, {"case": {"n": value}}) == []


def test_negated_ranges_and_other_atoms_on_the_same_path(tmp_path):
    rs = _compile('{n: "number?", s: "string?"}',
                  [["not (case.n < 3)"], ["case.n != 3", "case.n < 5"], ["case.n == 3", "case.n >= 3"],
                   ['case.s == "x"', "case.n > 2"], ['case.s == "y"', "case.n > 2"],
                   ["case.n > 2", "case.n < 4", "case.n > 2.5"]],
                  tmp_path)
    m, index = DurableMatcher(rs), IndexMatcher(rs)
    for n, s in itertools.product([2, 2.5, 3, 3.5, 4, 5, None], ["x", "y", None]):
        env = {"case": {"n": n, "s": s}}
        assert m.match(env) == match_reference(rs, env) == index.match(env), env
    assert m.stats["fallbacks"] == 0, m.last_fallback


def test_random_bands_agree_with_the_reference(tmp_path):
    rng = random.Random(11)
    bounds = [-3, -1, 0, 0.5, 1, 2, 2.5, 4, 10]
    rules = []
    for _ in range(150):
        conds = [f"case.n {rng.choice(OPS)} {rng.choice(bounds)}" for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            conds.append(f"case.m {rng.choice(OPS)} {rng.choice(bounds)}")
        if rng.random() < 0.5:
            conds.append(f'case.s == "{rng.choice("abc")}"')
        rules.append(conds)
    rs = _compile('{n: "number?", m: "number?", s: "string?"}', rules, tmp_path)
    m, index = DurableMatcher(rs), IndexMatcher(rs)
    values = bounds + [-5, -2, 0.25, 1.5, 3, 7, 11, None, float("nan")]
    for n, mm, s in itertools.product(values, [None, 0, 2, 2.5, 9], ["a", "b", None]):
        env = {"case": {"n": n, "m": mm, "s": s}}
        assert m.match(env) == match_reference(rs, env) == index.match(env), env
    assert m.stats["fallbacks"] == 0, m.last_fallback


def _bands(n_rules: int, seed: int = 5) -> list[list[str]]:
    """Overlapping amount bands behind one or two equalities: the shape of the benchmark's rules."""
    rng = random.Random(seed)
    rules = []
    for _ in range(n_rules):
        conds = [f'case.s == "{rng.choice("abcde")}"']
        if rng.random() < 0.4:
            conds.append(f'case.t == "{rng.choice("uvwxyz")}"')
        lo = int(math.exp(rng.uniform(math.log(20), math.log(200_000))))
        hi = int(lo * rng.uniform(1.5, 30))
        r = rng.random()
        conds += ([f"case.a >= {lo}", f"case.a < {hi}"] if r < 0.6 else [f"case.a >= {lo}"] if r < 0.8
                  else [f"case.a < {hi}"])
        if rng.random() < 0.2:
            conds.append(f"case.r >= {rng.randint(1, 5)}")
        rules.append(conds)
    return rules


@pytest.mark.slow
def test_two_thousand_overlapping_bands_need_fewer_networks_and_agree(tmp_path):
    """Denser than the benchmark: every rule behind one of five values, a fifth of them open
    half-lines (`a >= lo`), so ~100 interval fields hold at once under one node and the
    stack bound, not the rule budget, splits them. Range atoms in the networks needed 15
    networks here (measured before the interval index); now 10."""
    rs = _compile('{a: "number?", r: "number?", s: "string?", t: "string?"}', _bands(2000), tmp_path)
    m, index = DurableMatcher(rs), IndexMatcher(rs)
    assert len(m.networks) <= 12
    rng = random.Random(3)
    for _ in range(60):
        env = {"case": {"a": rng.choice([rng.randint(0, 10 ** 6), rng.choice([20, 100, 1000, 50_000])]),
                        "r": rng.choice([None, 1, 3, 5]), "s": rng.choice("abcde"), "t": rng.choice("uvwxyz")}}
        assert m.match(env) == match_reference(rs, env) == index.match(env), env
    assert m.stats["fallbacks"] == 0, m.last_fallback


def test_the_benchmark_ruleset_at_2000_rules_builds_few_networks(tmp_path):
    """The generated benchmark ruleset itself (`benchmarks/rule_path.py`, 2,000 rules): 49
    networks before the interval index, now the rule budget's minimum (2,000 / 250 = 8)."""
    from benchmarks import rule_path as rp
    from engine.workspace import load_workspace

    data = tmp_path / "data"
    data.mkdir()
    root = rp.make_workspace(tmp_path / "ws", 2000, data)
    ws = load_workspace(root, load_graph=False)
    assert not ws.errors, [str(d) for d in ws.errors[:3]]
    rs = ws.rulesets[rp.RULESET]
    m = DurableMatcher(rs)
    assert len(m.networks) <= -(-2000 // RULE_BUDGET) + 2
    assert ("case", "invoice", "amount") in m.paths


def test_messages_stay_within_durable_rules_field_limit(tmp_path):
    """durable-rules refuses a message of more than 254 fields (error 302). Here 250 rules
    share their first equality and differ in a second one, so few interval fields hold at
    once in the network but all 250 would be sent: the split keeps messages small."""
    from engine.match.durable import MESSAGE_BUDGET

    rules = [['case.g == "a"', f'case.h == "v{i % 10}"', f"case.n >= {i}", f"case.n < {10 ** 6 + i}"]
             for i in range(250)]
    rs = _compile('{g: "string?", h: "string?", n: "number?"}', rules, tmp_path)
    m = DurableMatcher(rs)
    assert len(m.networks) >= 2
    for h in ("v0", "v3", "w"):
        for n in (0, 100, 5000, 10 ** 6 + 100):
            env = {"case": {"g": "a", "h": h, "n": n}}
            for body in m.bodies(env):
                assert body is None or body.count('": ') + 2 <= MESSAGE_BUDGET
            assert m.match(env) == match_reference(rs, env)
    assert m.stats["fallbacks"] == 0, m.last_fallback


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(rules=st.lists(td.rule_conditions, min_size=4, max_size=24),
       cases=st.lists(td.payloads, min_size=6, max_size=12))
def _check_tiny_networks(tmp_path, rules, cases):
    rs = td._compile(td.SCALAR_CASE, rules, tmp_path)
    with mock.patch.multiple(durable, NODE_BUDGET=3, RULE_BUDGET=3, MESSAGE_BUDGET=12):
        matcher = DurableMatcher(rs)
    for payload in cases:
        value, problems = validate_payload(rs.case_schema, payload, mini_workspace().prefixes)
        assert problems == []
        td._agree(rs, [matcher], {"case": value, TODAY: CLOCK})
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback
    TINY["rulesets"] += 1
    TINY["split"] += len(matcher.networks) > 1
    TINY["asked"] += matcher.stats["asked"]
    TINY["could_ask"] += matcher.stats["cases"] * len(matcher.networks)


TINY = {"rulesets": 0, "split": 0, "asked": 0, "could_ask": 0}


def test_differential_with_tiny_budgets(tmp_path):
    """The generated rulesets of `test_differential`, split into networks of at most three
    rules: first fit, gated interval fields and networks left unasked all get exercised."""
    _check_tiny_networks(tmp_path)
    assert TINY["split"] > TINY["rulesets"] // 2  # most rulesets were really split
    assert TINY["asked"] < TINY["could_ask"]  # and some networks were not asked
