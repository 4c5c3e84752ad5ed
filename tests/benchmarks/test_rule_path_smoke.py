"""The rule-path benchmark's generators at tiny size, so `benchmarks/rule_path.py` cannot rot.

No timing assertions: the generated ruleset must compile without errors, decide real cases,
and every side-by-side variant (DurableMatcher, linear scan, zen-engine) must find exactly
the matches of the reference evaluator.
"""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks import brightwater
from benchmarks import rule_path as rp
from engine.api import Engine
from engine.kg.resolver import resolve_facts
from engine.lang.payload import validate_payload
from engine.match.reference import match_reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_engine(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    data = base / "data"
    data.mkdir()
    brightwater.write(data / "graph.nt", seed=7, scale=0.05, fmt="nt")
    root = rp.make_workspace(base / "ws", 40, data, store_dir=base / "store")
    return Engine.open(root, matcher="durable", clock=lambda: dt.date(2026, 11, 1))  # its adapter stats


def test_generated_ruleset_is_deterministic_and_realistic():
    text = rp.ruleset_yaml(60, seed=7)
    assert text == rp.ruleset_yaml(60, seed=7)
    assert text.count("- id: bench.r") == 60
    assert "invoice.amount >=" in text and "invoice.amount <" in text  # overlapping ranges
    assert '== "' in text  # enum equalities


def test_generated_workspace_compiles_and_decides(bench_engine):
    ws = bench_engine.ws
    assert ws.errors == []
    rs = ws.rulesets[rp.RULESET]
    assert len(rs.rules) == 40
    assert ws.config.section("graph")["backend"] == "oxigraph-disk"
    cases = rp.sample_cases(ws.store, 15)
    assert cases
    outcomes = {bench_engine.decide(c).outcome for c in cases}
    assert outcomes <= {"execute", "deny", "escalate", "no_action"}
    assert bench_engine.matcher_for(rs).stats["fallbacks"] == 0


def test_side_by_side_variants_agree_with_the_reference(bench_engine):
    ws = bench_engine.ws
    rs = ws.rulesets[rp.RULESET]
    matcher = bench_engine.matcher_for(rs)
    scan = rp.linear_scanner(rs)
    zen_eval = rp.zen_evaluator(rs)
    table = rp.zen_decision_table(rs)
    assert len(table["nodes"][1]["content"]["rules"]) == len(rs.rules)
    for case in rp.sample_cases(ws.store, 15):
        payload, problems = validate_payload(rs.case_schema, case["payload"], ws.prefixes)
        assert not problems
        env, _ = resolve_facts(rs, payload, ws.graph, as_of=dt.date(2026, 11, 1))
        want = set(match_reference(rs, env))
        fact = matcher.flat_fact(env)
        assert set(matcher.match(env)) == want
        assert set(scan(fact)) == want
        if zen_eval is not None:
            assert set(zen_eval(fact)) == want


def test_cli_help_runs():
    with pytest.raises(SystemExit) as exc:
        rp.main(["--help"])
    assert exc.value.code == 0
