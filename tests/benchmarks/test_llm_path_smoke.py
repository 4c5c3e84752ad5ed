"""The LLM-path benchmark at smoke size, so `benchmarks/llm_path.py` cannot rot.

No timing assertions: the `--quick` run (the 240 demo cases, the model replaced by an
instant scripted one) must finish, and its results must be structurally right — the
model-call invariant holds, the baseline sends every case to the model, both answer
variants are measured, every number is there and positive. The helpers that patch the
pipeline must put it back exactly as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import llm_path as lp

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("llm-bench") / "quick.json"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "llm_path.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), p.stdout


def test_model_calls_are_the_undecided_cases_plus_repairs(quick):
    res, _ = quick
    for key in ("rulebridge_demo_replay", "rulebridge_demo", "rulebridge"):
        r = res["calls"][key]
        assert r["cases"] == lp.DEMO_CASES
        assert r["model_calls"] == r["reached_model"] + r["schema_repairs"] + r["guard_repairs"]
        assert 0 < r["reached_model"] <= r["undecided"] == r["cases"] - r["rule_decided"]
        assert r["rule_decided"] > 0
    # the demo author reproduces the recorded demo answers exactly
    replay, author = res["calls"]["rulebridge_demo_replay"], res["calls"]["rulebridge_demo"]
    assert replay == author
    assert res["demo_mismatches"] == 0


def test_baseline_sends_every_case_to_the_model(quick):
    res, _ = quick
    rb, bl = res["calls"]["rulebridge"], res["calls"]["baseline"]
    assert bl["rule_decided"] == 0
    assert bl["reached_model"] == bl["cases"] - bl["no_permitted_action"]
    assert bl["model_calls"] == bl["reached_model"] + bl["schema_repairs"] + bl["guard_repairs"]
    assert bl["model_calls"] > rb["model_calls"]
    assert bl["calls_per_1000"] == pytest.approx(bl["model_calls"] * 1000 / bl["cases"])
    for r in (rb, bl):
        assert r["prompt_chars_mean"] > 0 and r["prompt_tokens_mean"] > 0
        assert r["prompt_tokens_total"] > 0


def test_both_answer_variants_are_measured(quick):
    res, _ = quick
    ov = res["overhead"]
    assert set(ov["variants"]) == set(lp.VARIANTS)
    n = ov["cases"]
    assert n == res["calls"]["rulebridge"]["reached_model"]
    valid, invalid = ov["variants"]["valid_first"], ov["variants"]["invalid_first"]
    assert valid["schema_repairs"] == 0
    assert invalid["schema_repairs"] >= n  # every case takes one schema-repair round
    assert invalid["script_calls"] == valid["script_calls"] + invalid["schema_repairs"]
    assert invalid["timing"]["calls_per_decision"] > valid["timing"]["calls_per_decision"] >= 1
    for v in ov["variants"].values():
        for loop in (v["timing"], v["breakdown"]):
            assert loop["decisions"] >= n
            for key in ("total_us", "overhead_us"):
                assert 0 < loop[key]["p50"] <= loop[key]["p99"]
            assert loop["model_us"]["p50"] < loop["total_us"]["p50"]
        stages = v["breakdown"]["stages_us"]
        assert set(lp.STAGES) | set(lp.PROMPT_PARTS) == set(stages)
        for s in ("resolve", "match", "prompt", "call_machinery", "parse_validate", "verify", "attempt_hash"):
            assert stages[s]["p50"] > 0, s
    assert ov["rule_only"]["total_us"]["p50"] > 0
    assert ov["as_recorded_with_review_queue"]["decisions"] >= n


def test_report_has_tables_and_verdicts(quick):
    res, stdout = quick
    assert "| variant |" in stdout and "| stream |" in stdout and "model calls per 1,000 cases" in stdout
    verdicts = [line for line in res["verdict"] if line.strip().startswith(("MET", "NOT MET"))]
    assert len(verdicts) == 2 * len(lp.VARIANTS) + 1
    assert res["machine"]["cores"] and res["machine"]["cpu"] is not None


def test_authors_give_the_variants_they_promise():
    author = lp.load_demo_author()
    ws_like = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert lp.invalid_first(lambda m: "ok")(ws_like) == lp.INVALID_ANSWER
    assert lp.invalid_first(lambda m: "ok")(ws_like + ws_like) == "ok"
    seen = []
    lp.valid_first(lambda m: seen.append(len(m)) or "ok")(ws_like)
    assert seen == [4]  # answered as on a repair round: never the malformed first answer
    assert callable(author)


def test_patches_are_undone(tmp_path):
    import engine.kg.resolver as resolver
    import engine.llm.fallback as fallback
    import engine.llm.prompt as prompt
    import engine.pipeline as pipeline

    engine = lp.open_engine(tmp_path)
    before = (pipeline.verify, pipeline.facts_of, pipeline.apply_hit_policy, prompt.build_messages,
              prompt.nearest_misses, fallback.parse_answer, fallback.prompt_hash, resolver.Reads.provenance)
    with lp.Stages(engine):
        assert pipeline.verify is not before[0]
        assert "call" in engine.fallback.__dict__
    with lp.forced_no_rule():
        assert pipeline.apply_hit_policy is not before[2]
    after = (pipeline.verify, pipeline.facts_of, pipeline.apply_hit_policy, prompt.build_messages,
             prompt.nearest_misses, fallback.parse_answer, fallback.prompt_hash, resolver.Reads.provenance)
    assert after == before
    assert "call" not in engine.fallback.__dict__ and "json_schema" not in engine.ws.gate.catalog.__dict__
