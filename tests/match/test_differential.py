"""Differential tests: the durable-rules matcher and the index matcher against the reference evaluator.

The reference evaluator (`engine.match.reference.match_reference`) is the specification;
the durable-rules adapter (`engine.match.durable.DurableMatcher`) and the discrimination
index (`engine.match.index.IndexMatcher`) must return exactly the same matched rule ids
(and the index's `first_match` the first of them). Rulesets are generated as YAML text and
compiled by the real compiler; case values come from small domains so that matches (and
near misses) are frequent, with missing and null values mixed in.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.kg.resolver import resolve_facts
from engine.lang.payload import validate_payload
from engine.lang.semantics import TODAY
from engine.match.durable import DurableMatcher
from engine.match.index import IndexMatcher
from engine.match.reference import match_reference
from tests.rulesets import CLOCK, compile_ruleset, mini_workspace

_names = (f"diff{i}" for i in itertools.count())
CHECKED = {"cases": 0, "rulesets": 0, "matches": 0}

# -- the case schema and its value domains ------------------------------------------------------------

SCALAR_CASE = '{s: "string?", t: "string?", n: "number?", m: "number?", b: "boolean?", c: "boolean?", d: "date?"}'
STRINGS = ["a", "b", "ab", "B", ""]
NUMBERS = [-2, -1, 0, 1, 2, 3, -1.5, 0.5, 2.5, 1.0, -0.0, 0.1 + 0.2]
DATES = ["2026-01-01", "2026-01-02", "2026-02-01", "2025-12-31"]

s_lit = st.sampled_from(STRINGS).map(lambda v: f'"{v}"')
n_lit = st.sampled_from(NUMBERS).map(repr)
d_lit = st.sampled_from(DATES).map(lambda v: f'"{v}"')
cmp_op = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
eq_op = st.sampled_from(["==", "!="])
s_path = st.sampled_from(["case.s", "case.t"])
n_path = st.sampled_from(["case.n", "case.m"])
b_path = st.sampled_from(["case.b", "case.c"])

# Comparisons of one path with a literal (the Rete network's atoms), either way round.
atoms = st.one_of(
    st.tuples(n_path, cmp_op, n_lit).map(" ".join),
    st.tuples(n_lit, cmp_op, n_path).map(" ".join),
    st.tuples(s_path, cmp_op, s_lit).map(" ".join),
    st.tuples(s_lit, eq_op, s_path).map(" ".join),
    st.tuples(st.just("case.d"), cmp_op, d_lit).map(" ".join),
    st.tuples(b_path, eq_op, st.sampled_from(["true", "false"])).map(" ".join),
    b_path,
    b_path.map(lambda p: f"not {p}"),
)
# What the network cannot express: synthetic fields computed once per case.
synthetic = st.one_of(
    st.tuples(n_path, cmp_op, n_path).map(" ".join),
    st.tuples(s_path, cmp_op, s_path).map(" ".join),
    st.tuples(n_path, st.sampled_from(["+", "-", "*", "/", "%"]), n_path, cmp_op, n_lit).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} {t[3]} {t[4]}"),
    st.tuples(n_path, cmp_op, n_lit).map(lambda t: f"-{t[0]} {t[1]} {t[2]}"),
    st.tuples(n_path, st.lists(n_lit, min_size=1, max_size=3)).map(lambda t: f"{t[0]} in [{', '.join(t[1])}]"),
    st.tuples(s_path, st.lists(s_lit, min_size=1, max_size=3)).map(lambda t: f"{t[0]} not in [{', '.join(t[1])}]"),
    st.tuples(s_lit, s_path).map(lambda t: f"{t[0]} in {t[1]}"),
    st.tuples(n_lit, n_path, n_lit).map(lambda t: f"{t[0]} < {t[1]} <= {t[2]}"),
    st.sampled_from(["exists(case.s)", "not exists(case.n)", "coalesce(case.n, 0) > 0", "case.d < date(\"2026-01-02\")",
                     "days_between(case.d, today()) > 300", "case.b == case.c", "abs(case.n) >= 1"]),
)
simple = st.one_of(atoms, synthetic)
conditions = st.one_of(
    simple,
    simple.map(lambda a: f"not ({a})"),
    st.tuples(simple, st.sampled_from(["and", "or"]), simple).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
    st.tuples(simple, simple, simple).map(lambda t: f"({t[0]}) or ({t[1]}) and not ({t[2]})"),
)
rule_conditions = st.lists(conditions, min_size=0, max_size=4)


def _value(domain):
    return st.one_of(st.sampled_from(domain), st.none())


payloads = st.fixed_dictionaries({}, optional={
    "s": _value(STRINGS), "t": _value(STRINGS), "n": _value(NUMBERS), "m": _value(NUMBERS),
    "b": _value([True, False]), "c": _value([True, False]), "d": _value(DATES),
})


def _yaml_text(name: str, case: str, rules: list[list[str]]) -> str:
    lines = [f"ruleset: {name}", "on: differential", "hit_policy: collect", f"case: {case}", "rules:"]
    for i, conds in enumerate(rules):
        lines.append(f"  - id: r{i}")
        lines.append("    when:" + ("" if conds else " []"))
        lines.extend("      - '" + c.replace("'", "''") + "'" for c in conds)
        lines.append("    then: {no_action: x}")
    return "\n".join(lines) + "\n"


def _compile(case: str, rules: list[list[str]], tmp: Path):
    text = _yaml_text(next(_names), case, rules)
    rs, sink = compile_ruleset(text, tmp / "generated.yaml")
    assert rs is not None and sink.errors == [], (text, sink.errors)
    return rs


def _agree(rs, matchers: list, env: dict) -> list[str]:
    want = match_reference(rs, env)
    for matcher in matchers:
        got = matcher.match(env)
        assert got == want, f"{matcher.name} {got} != reference {want} for {env.get('case')}"
        if isinstance(matcher, IndexMatcher):
            assert matcher.first_match(env) == (want[0] if want else None)
    CHECKED["cases"] += 1
    CHECKED["matches"] += len(want)
    return want


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(rules=st.lists(rule_conditions, min_size=1, max_size=8), cases=st.lists(payloads, min_size=6, max_size=14))
def _check_scalar(tmp_path, rules, cases):
    rs = _compile(SCALAR_CASE, rules, tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    CHECKED["rulesets"] += 1
    prefixes = mini_workspace().prefixes
    for payload in cases:
        value, problems = validate_payload(rs.case_schema, payload, prefixes)
        assert problems == []
        _agree(rs, [matcher, index], {"case": value, TODAY: CLOCK})
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback


@pytest.mark.slow
def test_durable_index_and_reference_agree_on_generated_rulesets(tmp_path):
    before = CHECKED["cases"]
    _check_scalar(tmp_path)
    checked = CHECKED["cases"] - before
    assert checked >= 3000, checked
    assert CHECKED["matches"] > checked // 4  # the domains are small enough that rules do match


# -- paths into the graph -------------------------------------------------------------------------------

GRAPH_CASE = '{invoice: "Invoice?", invoices: "[Invoice]?", n: "number?"}'
INVOICES = ["ex:I1", "ex:I2", "ex:I3", "ex:I4", "ex:I5", "ex:I6", "ex:NOPE"]
graph_conditions = st.one_of(
    st.tuples(st.just("case.invoice.amount"), cmp_op, st.sampled_from(["50", "420", "420.0", "5000", "1000"])).map(
        " ".join),
    st.tuples(st.just("case.invoice.vendor.status"), eq_op, st.sampled_from(['"approved"', '"blocked"'])).map(" ".join),
    st.tuples(st.just("case.invoice.number"), cmp_op, st.sampled_from(['"A-1"', '"D-1"', '"C"'])).map(" ".join),
    st.tuples(st.just("case.invoice.vendor.since"), cmp_op, st.sampled_from(['"2020-01-01"', '"2026-10-20"'])).map(
        " ".join),
    st.sampled_from([
        "case.invoice.vendor.sanctioned", "not case.invoice.vendor.sanctioned",
        "case.invoice.vendor.sanctioned == false",
        "case.invoice.requester.limit >= case.invoice.amount", "case.invoice.amount > case.n",
        "all(l.quantity <= l.received for l in case.invoice.lines)", "count(case.invoice.lines) >= 1",
        "sum(case.invoice.lines.amount) == case.invoice.amount", "any(i.amount > 1000 for i in case.invoices)",
        '"blocked" in case.invoices.vendor.status', "sum(case.invoices.amount) < 1000",
        "case.invoice.requester.reports_to.limit > 5000", "exists(case.invoice.vendor.owned_by)",
        "days_between(case.invoice.vendor.since, today()) < 30", 'case.invoice == "ex:I1"',
        "case.invoice.vendor.name != \"Acme\"",
    ]),
)
graph_payloads = st.fixed_dictionaries({}, optional={
    "invoice": _value(INVOICES), "invoices": st.lists(st.sampled_from(INVOICES), max_size=3),
    "n": _value(NUMBERS + [420, 5000]),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rules=st.lists(st.lists(st.one_of(graph_conditions, graph_conditions.map(lambda c: f"not ({c})")),
                               max_size=3), min_size=1, max_size=8),
       cases=st.lists(graph_payloads, min_size=5, max_size=10))
def _check_graph(tmp_path, rules, cases):
    ws = mini_workspace()
    rs = _compile(GRAPH_CASE, rules, tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    for payload in cases:
        value, problems = validate_payload(rs.case_schema, payload, ws.prefixes)
        assert problems == []
        env, _reads = resolve_facts(rs, value, ws.graph, as_of=CLOCK)
        _agree(rs, [matcher, index], env)
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback


def test_durable_index_and_reference_agree_through_the_graph(tmp_path):
    _check_graph(tmp_path)


# -- durable-rules' fixed stack (error 303) -----------------------------------------------------------

@pytest.mark.parametrize("a,want", [(1000, 100), (50, 51), (-1, 0)])
def test_a_hundred_overlapping_ranges_do_not_overflow(tmp_path, a, want):
    rs = _compile("{a: number}", [[f"case.a >= {i}"] for i in range(100)], tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    env = {"case": {"a": a}}
    got = matcher.match(env)
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback
    assert got == [f"r{i}" for i in range(want)] == match_reference(rs, env) == index.match(env)
    assert len(matcher.networks) > 1  # the rules were split to keep each network under the stack size


def test_many_rules_mixing_ranges_and_equalities_do_not_overflow(tmp_path):
    rules = []
    for i in range(400):
        rules.append([f"case.a {['>=', '>', '<=', '<', '!='][i % 5]} {i % 97}", f"case.s != \"x{i % 7}\""]
                     + ([f"case.a + case.b > {i % 13}"] if i % 3 == 0 else []))
    rs = _compile('{a: number, b: number, s: string}', rules, tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    for a in (-5, 0, 48, 96, 200):
        env = {"case": {"a": a, "b": 1, "s": "y"}}
        assert matcher.match(env) == match_reference(rs, env) == index.match(env)
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback


# -- known disagreements ----------------------------------------------------------------------------------

def test_nan_is_treated_alike(tmp_path):
    rs = _compile('{n: "number?"}', [["case.n != 5"], ["not (case.n > 5)"], ["case.n == case.n"]], tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    env = {"case": {"n": float("nan")}}
    assert matcher.match(env) == match_reference(rs, env) == index.match(env)


def test_infinite_literal_is_rejected_or_matched_alike(tmp_path):
    from tests.rulesets import compile_ruleset as compile_

    text = _yaml_text(next(_names), '{n: "number?"}', [["case.n < 1e999"]])
    rs, sink = compile_(text, tmp_path / "inf.yaml")
    if sink.errors:
        return
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    env = {"case": {"n": 1}}
    assert matcher.match(env) == match_reference(rs, env) == index.match(env) == ["r0"]


@given(s=st.text(alphabet="azAZé😀ü", max_size=3), lit=st.sampled_from(["z", "é", "a"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_non_ascii_text_is_ordered_alike(tmp_path, s, lit):
    rs = _compile('{s: "string?"}', [[f'case.s < "{lit}"'], [f'case.s >= "{lit}"'], [f'case.s == "{lit}"']],
                  tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    env = {"case": {"s": s}}
    assert matcher.match(env) == match_reference(rs, env) == index.match(env)


@pytest.mark.parametrize("literal", ["0.00001", "1e-5", "3e-8", "1e20"])
def test_exponent_literals_are_matched_alike(tmp_path, literal):
    rs = _compile('{n: "number?"}', [[f"case.n < {literal}"], [f"case.n >= {literal}"]], tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    for n in (0, 1e-6, 2, 1e21):
        env = {"case": {"n": n}}
        assert matcher.match(env) == match_reference(rs, env) == index.match(env)


@pytest.mark.parametrize("n", [1e-6, 1e16, 5e-324])
def test_exponent_values_match_without_fallback(tmp_path, n):
    rs = _compile('{n: "number?"}', [["case.n < 1"], ["case.n >= 1"]], tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    env = {"case": {"n": n}}
    assert matcher.match(env) == match_reference(rs, env) == index.match(env)
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback


def test_integers_beyond_64_bits_are_matched_alike(tmp_path):
    rs = _compile('{n: "number?"}', [["case.n < 12345678901234567890"]], tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    env = {"case": {"n": 2**63}}
    assert matcher.match(env) == match_reference(rs, env) == index.match(env)


def test_integers_beyond_2_to_53_and_infinities_are_matched_alike_without_fallback(tmp_path):
    """durable-rules compares integers with doubles as doubles: 2**53 + 1 would equal 2**53."""
    rs = _compile('{n: "number?"}', [["case.n == 9007199254740992"], ["case.n > 9007199254740992.0"],
                                     ["case.n <= -9007199254740992"], ["case.n < 1e300"], ["case.n != 0.5"]],
                  tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    for n in (2**53, 2**53 + 1, -(2**53) - 1, 2**63, 10**30, float("inf"), float("-inf"), 1e300, 0.5):
        env = {"case": {"n": n}}
        assert matcher.match(env) == match_reference(rs, env) == index.match(env), n
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback


TRICKY_TEXT = ['a"b', "a\\b", "a\x01", "a\x01z", "\ud800", "a\ud800", '"', "é", "a", "a ", "a!", "a!b", "", "\x00",
               "a#", "b"]


@pytest.mark.parametrize("literal", ["a", "a#", "a!", "a b", "b", "", 'a"c', "é"])
def test_text_that_json_escapes_or_ends_before_space_is_matched_alike(tmp_path, literal):
    """durable-rules compares strings as JSON text (`a"b` is written `a\\"b`) and a proper prefix
    by its closing quote (`"a" < "a!"` is false there)."""
    lit = json.dumps(literal)
    rs = _compile('{s: "string?"}', [[f"case.s {op} {lit}"] for op in ("==", "!=", "<", "<=", ">", ">=")]
                  + [['case.s > "a"'], ['case.s < "a#"'], ['case.s == "a "']], tmp_path)
    matcher, index = DurableMatcher(rs), IndexMatcher(rs)
    for s in TRICKY_TEXT:
        env = {"case": {"s": s}}
        assert matcher.match(env) == match_reference(rs, env) == index.match(env), repr(s)
    assert matcher.stats["fallbacks"] == 0, matcher.last_fallback
