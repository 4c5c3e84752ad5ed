"""Benchmark of the LLM path's own overhead, and of how many model calls the rules save.

    python benchmarks/llm_path.py --quick                 # smoke run: the 240 demo cases, short loops
    python benchmarks/llm_path.py                         # 1,000 cases, 3 s per measured loop
    python benchmarks/llm_path.py --cases 1000 --seconds 5 --json llm_path.json

The script opens the repository's workspace (`Engine.open`, review queue in a temporary
SQLite file, never in the repository) with an *instant* model in place of the LLM, and runs
the demo stream: `engine.demo.sample_cases(ws, N, seed=7)` — its first 240 cases are exactly
the cases of `rulebridge demo`; with N = 1,000 the same generator simply goes on.

The answers are the demo's own: `demo_author` in `examples/llm/make_demo_responses.py` is the
deterministic stand-in that wrote `examples/llm/demo_responses.jsonl`. Before anything is
measured the script checks that it gives, on the 240 demo cases, exactly the decisions that
replaying the recorded file gives (so the 1,000-case stream and the baseline, whose prompts
are not in the file, get answers of the same author).

1. **Model calls per 1,000 cases** (counted by the model itself, and cross-checked against
   `Fallback.calls` and the decisions' `llm.calls`): rulebridge — only the cases no rule
   decides go to the model — against an "LLM decides everything" baseline on the same stream:
   the same engine with the hit policy forced to "no rule decides", so every case really runs
   through prompt building, the fallback (with its repairs) and the verification gate. Prompt
   size per call in characters and tokens (tiktoken `o200k_base`, from litellm's bundled copy;
   chars/4 if unavailable). The invariant is asserted: rulebridge's model calls == cases no
   rule decided (that have a permitted action) + schema repairs + guard repairs, never more.
2. **Overhead** of `Engine.decide` on the cases that reach the model, the model replaced by a
   `ScriptedModel` playing that case's pre-recorded answers (model time ≈ µs, measured inside
   the model and subtracted). Three variants: `valid_first` (the first answer is valid),
   `invalid_first` (the first answer fails the schema: one schema-repair round),
   `as_recorded` (the demo's own answers: a few malformed first answers, guard repairs).
   Each is compared with the rule path alone on the same cases (`decide(llm=False)`), and
   broken down by stage in a separate instrumented loop (wrappers around the pipeline's own
   functions): prompt building, model-call machinery (budget, circuit breaker, retry
   wrapper, deadline thread), model, parsing + schema validation, verification gate.

Results go to stdout as Markdown tables and, with `--json`, to a file. See
benchmarks/RESULTS-llm_path.md.
"""

from __future__ import annotations

import argparse
import collections
import gc
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `engine` importable from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.machine import describe, load  # noqa: E402

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEMO_RESPONSES = REPO / "examples" / "llm" / "demo_responses.jsonl"
DEMO_AUTHOR = REPO / "examples" / "llm" / "make_demo_responses.py"
DEMO_CASES = 240  # `rulebridge demo`'s default count
TARGETS = {"overhead_p50_ms": 2.0, "overhead_p99_ms": 10.0}
VARIANTS = ("valid_first", "invalid_first", "as_recorded")
# A first answer that is valid JSON but fails the answer schema (confidence out of range, no
# rationale, an unknown field): parsed, validated by pydantic, errors formatted for the model.
INVALID_ANSWER = json.dumps({"decision": "propose", "action": "approve", "params": {}, "confidence": 1.5,
                             "comment": "looks fine to me"})
STAGES = ("resolve", "match", "prompt", "attempt_hash", "call_machinery", "model", "parse_validate", "verify",
          "other")
# The prompt stage in parts (they add up to `prompt`).
PROMPT_PARTS = ("prompt_facts", "prompt_schemas", "prompt_near_misses", "prompt_render")
STAGE_LABELS = {
    "resolve": "resolve facts (rule path)", "match": "match + hit policy (rule path)",
    "prompt": "prompt building", "prompt_facts": "  ↳ facts + provenance for the prompt",
    "prompt_schemas": "  ↳ permitted actions' JSON schemas",
    "prompt_near_misses": "  ↳ nearest misses (explain_rules)",
    "prompt_render": "  ↳ policy text + JSON rendering", "attempt_hash": "attempt prompt hash (sha256)",
    "call_machinery": "model-call machinery (budget, breaker, retry, deadline thread)",
    "model": "model (instant)", "parse_validate": "parse + schema validation", "verify": "verification gate",
    "other": "other (session, trace, Decision)"}


# -- the model --------------------------------------------------------------------------------------------
def load_demo_author() -> Callable[[list[dict[str, str]]], str]:
    """`demo_author` from examples/llm/make_demo_responses.py: the author of the recorded demo answers."""
    spec = importlib.util.spec_from_file_location("rulebridge_demo_responses", DEMO_AUTHOR)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.demo_author


def valid_first(author: Callable) -> Callable:
    """The same author, minus its occasional malformed first answer (it answers as on a repair round)."""
    def answer(messages: list[dict[str, str]]) -> str:
        if len(messages) == 2:
            return author(messages + [{"role": "assistant", "content": ""}, {"role": "user", "content": ""}])
        return author(messages)
    return answer


def invalid_first(author: Callable) -> Callable:
    """A first answer that fails the schema, then the author's valid answers: one schema repair."""
    good = valid_first(author)

    def answer(messages: list[dict[str, str]]) -> str:
        return INVALID_ANSWER if len(messages) == 2 else good(messages)
    return answer


class InstantModel:
    """A `ScriptedModel` (a list of answers, or a function of the prompt) that times itself.

    `model_ns` is the time spent inside `complete` (subtracted from the LLM path's overhead);
    every prompt and answer is kept, so calls and prompt sizes are counted by the model itself."""

    def __init__(self, script: Any, name: str = "instant"):
        from engine.llm.clients import ScriptedModel

        self.inner = ScriptedModel(script, name=name)
        self.name = name
        self.model_ns = 0
        self.replies: list[str] = []

    @property
    def calls(self) -> int:
        return self.inner.calls

    @property
    def prompts(self) -> list[list[dict[str, str]]]:
        return self.inner.prompts

    def complete(self, messages: list[dict[str, str]], *, timeout: float) -> Any:
        a = time.perf_counter_ns()
        reply = self.inner.complete(messages, timeout=timeout)
        self.replies.append(reply.text)
        self.model_ns += time.perf_counter_ns() - a
        return reply


# -- the engine -------------------------------------------------------------------------------------------
def open_engine(state_dir: Path) -> Any:
    """The repository's workspace with an instant model; budgets lifted (the benchmark makes
    thousands of calls a minute), every other [llm] setting as configured."""
    from engine.api import Engine
    from engine.config import load_config
    from engine.errors import DiagnosticSink
    from engine.llm.config import LLMConfig, load_llm_config

    config = load_config(REPO, DiagnosticSink())
    cfg, _ = load_llm_config(config.section("llm"), REPO, config.llm_environment())
    cfg = LLMConfig(**{**cfg.__dict__, "mode": "live", "model": "instant", "calls_per_minute": 10**9,
                       "cost_per_day": 1e12, "backoff_s": 0.0})
    ids = iter(range(10**12))
    engine = Engine.open(REPO, model=InstantModel([]), llm=cfg, state=f"sqlite:///{state_dir}/state.db",
                         new_id=lambda: f"bench-{next(ids)}")
    engine.warm()
    return engine


class forced_no_rule:
    """The "LLM decides everything" baseline: the hit policy picks no rule, so every case goes
    through the fallback path (prompt, model, repairs) and the verification gate."""

    def __enter__(self) -> None:
        import engine.pipeline as pipeline
        from engine.match.hit import HitResult

        self._orig = pipeline.apply_hit_policy
        pipeline.apply_hit_policy = lambda rs, matched: HitResult([])

    def __exit__(self, *exc: Any) -> None:
        import engine.pipeline as pipeline

        pipeline.apply_hit_policy = self._orig


def signature(d: Any) -> tuple:
    """What must not change between two runs of the same case: the outcome and the LLM's part."""
    llm = d.llm or {}
    return (d.outcome, d.source, d.reason, tuple(p.action for p in d.proposals), llm.get("calls", 0),
            llm.get("schema_repairs", 0), llm.get("guard_repairs", 0))


# -- prompt sizes -----------------------------------------------------------------------------------------
def token_counter() -> tuple[str, Callable[[str], int]]:
    """tiktoken o200k_base from litellm's bundled (offline) copy; else chars/4."""
    try:
        spec = importlib.util.find_spec("litellm")
        if spec and spec.submodule_search_locations:
            bundled = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
            if bundled.is_dir():
                os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda s: len(enc.encode(s, disallowed_special=()))
    except Exception:  # noqa: BLE001 - no tokenizer offline: estimate
        return "chars/4 (estimate)", lambda s: (len(s) + 3) // 4


# -- 1. model calls per 1,000 cases ----------------------------------------------------------------------
def run_stream(engine: Any, cases: list[dict[str, Any]], model: Any, count_tokens: Callable[[str], int],
               *, baseline: bool = False) -> dict[str, Any]:
    """Decide every case with `model`; count model calls, repairs and prompt sizes, check the invariant."""
    fb = engine.fallback
    fb.model, calls_before = model, fb.calls
    per_case_max = (1 + fb.config.max_repairs) * (1 + fb.config.guard_repairs)
    undecided = reached = schema = guard = trace_calls = no_permitted = 0
    outcomes: collections.Counter[str] = collections.Counter()
    sigs = []
    ctx = forced_no_rule() if baseline else None
    if ctx:
        ctx.__enter__()
    try:
        for c in cases:
            d = engine.decide(c, review=False)
            sigs.append(signature(d))
            outcomes[f"{d.outcome}/{d.reason}"] += 1
            if d.deciding:
                assert d.llm is None, f"{c['id']}: a rule decided, yet the model was asked"
                continue
            undecided += 1
            assert d.llm is not None
            n = d.llm.get("calls", 0)
            if not d.llm["permitted_actions"]:
                no_permitted += 1
                assert n == 0
                continue
            reached += 1
            assert 1 <= n <= per_case_max, f"{c['id']}: {n} model calls (at most {per_case_max})"
            assert d.llm["schema_repairs"] <= fb.config.max_repairs * (1 + d.llm["guard_repairs"])
            assert d.llm["guard_repairs"] <= fb.config.guard_repairs
            assert not any(a["error"] for a in d.llm["attempts"]), f"{c['id']}: {d.llm['attempts']}"
            trace_calls += n
            schema += d.llm["schema_repairs"]
            guard += d.llm["guard_repairs"]
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
    calls = model.calls
    # The invariant: one call per case no rule decided (that has an action to propose), plus the
    # bounded repairs, never more — counted by the model, by the fallback and in the decisions.
    assert calls == fb.calls - calls_before == trace_calls == reached + schema + guard, \
        (calls, fb.calls - calls_before, trace_calls, reached, schema, guard)
    assert calls <= undecided + schema + guard
    chars = [sum(len(m["content"]) for m in p) for p in model.prompts]
    tokens = [sum(count_tokens(m["content"]) + 4 for m in p) for p in model.prompts]  # +4: chat framing
    n = len(cases)
    return {"cases": n, "rule_decided": n - undecided, "undecided": undecided, "no_permitted_action": no_permitted,
            "reached_model": reached, "schema_repairs": schema, "guard_repairs": guard, "model_calls": calls,
            "calls_per_1000": calls * 1000 / n if n else 0.0, "invariant": "calls == reached + schema + guard "
            f"({calls} == {reached} + {schema} + {guard}); reached <= undecided ({reached} <= {undecided})",
            "prompt_chars_mean": statistics.fmean(chars) if chars else 0.0,
            "prompt_tokens_mean": statistics.fmean(tokens) if tokens else 0.0,
            "prompt_tokens_total": sum(tokens), "prompt_tokens_per_1000": sum(tokens) * 1000 / n if n else 0.0,
            "outcomes": dict(sorted(outcomes.items())), "signatures": sigs}


# -- 2. overhead ------------------------------------------------------------------------------------------
def pct(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    n = len(s)
    if not n:
        return {"n": 0}
    return {"n": n, "p50": s[n // 2], "p99": s[min(n - 1, int(n * 0.99))], "mean": statistics.fmean(s),
            "max": s[-1]}


class Stages:
    """Wraps the pipeline's own functions to time each stage of the LLM path inside `decide`."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.acc: collections.Counter[str] = collections.Counter()
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def _wrap(self, owner: Any, attr: str, stage: str) -> None:
        orig = getattr(owner, attr)
        acc, clock = self.acc, time.perf_counter_ns
        own = attr in getattr(owner, "__dict__", {})

        def timed(*a: Any, **kw: Any) -> Any:
            t = clock()
            try:
                return orig(*a, **kw)
            finally:
                acc[stage] += clock() - t
        setattr(owner, attr, timed)
        self._undo.append((owner, attr, orig if own else None, own))

    def __enter__(self) -> Stages:
        import engine.kg.resolver as resolver
        import engine.llm.fallback as fallback
        import engine.llm.prompt as prompt
        import engine.pipeline as pipeline

        # prompt building: the facts, the provenance, the action schemas, the messages
        self._wrap(pipeline, "facts_of", "prompt_facts")
        self._wrap(resolver.Reads, "provenance", "prompt_facts")
        self._wrap(self.engine.ws.gate.catalog, "json_schema", "prompt_schemas")
        self._wrap(prompt, "build_messages", "prompt_build")
        self._wrap(prompt, "nearest_misses", "prompt_near_misses")  # called inside build_messages
        self._wrap(fallback, "prompt_hash", "attempt_hash")  # each attempt is keyed by its prompt's hash
        self._wrap(self.engine.fallback, "call", "call_machinery")  # model time is subtracted below
        self._wrap(fallback, "parse_answer", "parse_validate")
        self._wrap(pipeline, "verify", "verify")
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, attr, orig, own in reversed(self._undo):
            if own:
                setattr(owner, attr, orig)
            else:
                delattr(owner, attr)
        self._undo.clear()


def record_scripts(engine: Any, cases: list[dict[str, Any]], author: Callable) -> list[tuple[list[str], tuple]]:
    """Each case's answers from `author` (the conversation as it unfolds), and the decision's signature."""
    out = []
    for c in cases:
        model = InstantModel(author)
        engine.fallback.model = model
        d = engine.decide(c, review=False)
        out.append((list(model.replies), signature(d)))
    return out


def time_loop(engine: Any, items: list[tuple[dict[str, Any], list[str] | None]], *, seconds: float,
              min_calls: int, llm: bool = True, review: bool = False, stages: bool = False) -> dict[str, Any]:
    """Decide the items round-robin for `seconds` (at least `min_calls` times), one fresh
    scripted model per decision; per-decision total, model time and (with `stages`) each stage."""
    fb = engine.fallback
    total, model_t, calls = [], [], []
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES + PROMPT_PARTS}
    clock = time.perf_counter_ns
    st = Stages(engine) if stages else None
    if st:
        st.__enter__()
    try:
        for case, script in items[:10]:  # warm-up
            fb.model = InstantModel(list(script or []))
            engine.decide(case, llm=llm, review=review)
        gc.collect()
        i, n = 0, len(items)
        deadline = time.perf_counter() + seconds
        while True:
            case, script = items[i % n]
            model = fb.model = InstantModel(list(script or []))
            if st:
                st.acc.clear()
            a = clock()
            d = engine.decide(case, llm=llm, review=review)
            t = clock() - a
            total.append(t / 1e3)
            model_t.append(model.model_ns / 1e3)
            calls.append(model.calls)
            if st:
                acc = st.acc
                prompt_parts = {"prompt_facts": acc["prompt_facts"], "prompt_schemas": acc["prompt_schemas"],
                                "prompt_near_misses": acc["prompt_near_misses"],
                                "prompt_render": acc["prompt_build"] - acc["prompt_near_misses"]}
                parts = {"resolve": (d.timings_us["authenticate"] + d.timings_us["resolve"]) * 1e3,
                         "match": d.timings_us["match"] * 1e3,
                         "prompt": sum(prompt_parts.values()), "attempt_hash": acc["attempt_hash"],
                         "call_machinery": acc["call_machinery"] - model.model_ns, "model": model.model_ns,
                         "parse_validate": acc["parse_validate"], "verify": acc["verify"]}
                parts["other"] = t - sum(parts.values())
                for k, v in (parts | prompt_parts).items():
                    per_stage[k].append(v / 1e3)
            i += 1
            if i >= min_calls and i % n == 0 and time.perf_counter() > deadline:
                break
    finally:
        if st:
            st.__exit__(None, None, None)
    overhead = [a - b for a, b in zip(total, model_t, strict=True)]
    out = {"decisions": len(total), "calls_per_decision": statistics.fmean(calls) if calls else 0.0,
           "total_us": pct(total), "model_us": pct(model_t), "overhead_us": pct(overhead)}
    if stages:
        out["stages_us"] = {k: pct(v) for k, v in per_stage.items()}
    return out


def run_overhead(engine: Any, llm_cases: list[dict[str, Any]], author: Callable, *, seconds: float,
                 min_calls: int, log: Callable[[str], None], profile: Path | None = None) -> dict[str, Any]:
    authors = {"valid_first": valid_first(author), "invalid_first": invalid_first(author), "as_recorded": author}
    res: dict[str, Any] = {"cases": len(llm_cases), "variants": {}}
    plain = [(c, None) for c in llm_cases]
    log(f"rule path alone on the {len(llm_cases)} cases that reach the model ...")
    res["rule_only"] = time_loop(engine, plain, seconds=seconds, min_calls=min_calls, llm=False)
    for name in VARIANTS:
        recorded = record_scripts(engine, llm_cases, authors[name])
        # correctness before timing: the scripted replay decides every case exactly as the author did
        for c, (script, sig) in zip(llm_cases, recorded, strict=True):
            model = engine.fallback.model = InstantModel(list(script))
            d = engine.decide(c, review=False)
            assert signature(d) == sig and model.calls == len(script), (c["id"], signature(d), sig)
        items = [(c, script) for c, (script, _sig) in zip(llm_cases, recorded, strict=True)]
        v: dict[str, Any] = {
            "script_calls": sum(len(s) for s, _ in recorded),
            "schema_repairs": sum(sig[5] for _, sig in recorded),
            "guard_repairs": sum(sig[6] for _, sig in recorded),
            "outcomes": dict(collections.Counter(f"{sig[0]}/{sig[2]}" for _, sig in recorded)),
        }
        if name == "invalid_first":
            assert all(sig[5] >= 1 for _, sig in recorded), "every case must take a schema repair round"
        if name == "valid_first":
            assert all(sig[5] == 0 for _, sig in recorded), "no case may take a schema repair round"
        log(f"{name}: {v['script_calls']} model calls over {len(llm_cases)} cases; timing ...")
        v["timing"] = time_loop(engine, items, seconds=seconds, min_calls=min_calls)
        log(f"{name}: stage breakdown ...")
        v["breakdown"] = time_loop(engine, items, seconds=seconds, min_calls=min_calls, stages=True)
        res["variants"][name] = v
    items = [(c, s) for c, (s, _sig) in zip(llm_cases, record_scripts(engine, llm_cases, author), strict=True)]
    log("as_recorded with the review-queue write (review=True) ...")
    res["as_recorded_with_review_queue"] = time_loop(engine, items, seconds=seconds, min_calls=min_calls,
                                                     review=True)
    if profile:
        import cProfile
        import io
        import pstats

        log(f"as_recorded under cProfile -> {profile} ...")
        prof = cProfile.Profile()
        prof.enable()
        time_loop(engine, items, seconds=seconds, min_calls=min_calls)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(60)
        profile.write_text(buf.getvalue(), encoding="utf-8")
    return res


# -- reporting --------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU, cores, RAM, load, Python and package versions."""
    return describe(("durable_rules", "pyoxigraph", "pydantic", "pybreaker", "tenacity", "SQLAlchemy", "tiktoken"))


def _ms(us: float) -> str:
    return f"{us / 1e3:,.3f}"


def _pp(p: dict[str, float], unit: str = "ms") -> str:
    if not p.get("n"):
        return "-"
    if unit == "ms":
        return f"{_ms(p['p50'])} / {_ms(p['p99'])}"
    return f"{p['p50']:,.0f} / {p['p99']:,.0f}"


def markdown(res: dict[str, Any]) -> str:
    lines: list[str] = []
    calls = res["calls"]
    lines += ["### Model calls on the demo stream", "",
              (f"Tokens: {res['tokenizer']}, per call = every message of the prompt sent (system, user, and "
               "on a repair round the earlier answer and the errors)."), "",
              ("| stream | cases | decided by a rule | reached the model | schema repairs | guard repairs "
               "| model calls | calls per 1,000 cases | prompt chars / call | prompt tokens / call "
               "| prompt tokens per 1,000 cases |"),
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("rulebridge_demo_replay", "rulebridge, demo 240 (replayed file)"),
                       ("rulebridge_demo", "rulebridge, demo 240 (demo author)"),
                       ("baseline_demo", "LLM decides everything, demo 240"),
                       ("rulebridge", f"rulebridge, stream {calls['rulebridge']['cases']:,}"),
                       ("baseline", f"LLM decides everything, stream {calls['baseline']['cases']:,}")):
        r = calls.get(key)
        if not r or (key in ("rulebridge", "baseline") and r["cases"] == DEMO_CASES):
            continue  # the stream is the demo itself
        lines.append(f"| {label} | {r['cases']:,} | {r['rule_decided']:,} | {r['reached_model']:,} "
                     f"| {r['schema_repairs']} | {r['guard_repairs']} | **{r['model_calls']:,}** "
                     f"| **{r['calls_per_1000']:,.1f}** | {r['prompt_chars_mean']:,.0f} "
                     f"| {r['prompt_tokens_mean']:,.0f} | {r['prompt_tokens_per_1000']:,.0f} |")
    ov = res["overhead"]
    lines += ["", f"### LLM-path overhead, model time excluded ({ov['cases']} cases that reach the model; ms)", "",
              ("`decide` = the whole `Engine.decide(case, review=False)` of a case that reaches the model; "
               "`model` = time inside the instant model; `overhead` = decide − model (the target); "
               "`rule path alone` = `decide(case, llm=False)` of the same cases; `increment` = overhead p50 − "
               "rule-path p50."), "",
              ("| variant | decisions timed | model calls / decision | decide p50 / p99 | model p50 / p99 "
               "| **overhead p50 / p99** | rule path alone p50 / p99 | increment p50 |"),
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ro = ov["rule_only"]
    for name, v in ov["variants"].items():
        t = v["timing"]
        lines.append(f"| {name} | {t['decisions']:,} | {t['calls_per_decision']:.2f} | {_pp(t['total_us'])} "
                     f"| {_pp(t['model_us'])} | **{_pp(t['overhead_us'])}** | {_pp(ro['total_us'])} "
                     f"| {_ms(t['overhead_us']['p50'] - ro['total_us']['p50'])} |")
    rq = ov.get("as_recorded_with_review_queue")
    if rq:
        lines.append(f"| as_recorded + review-queue write | {rq['decisions']:,} | {rq['calls_per_decision']:.2f} "
                     f"| {_pp(rq['total_us'])} | {_pp(rq['model_us'])} | {_pp(rq['overhead_us'])} "
                     f"| {_pp(ro['total_us'])} | {_ms(rq['overhead_us']['p50'] - ro['total_us']['p50'])} |")
    lines += ["", "### Where the time goes (instrumented loop; µs per decision, p50 / p99, and share of the mean)",
              "", "| stage | " + " | ".join(ov["variants"]) + " |", "|---|" + "---:|" * len(ov["variants"])]
    for stage in [x for s in STAGES for x in ((s,) + PROMPT_PARTS if s == "prompt" else (s,))]:
        cells = []
        for v in ov["variants"].values():
            b = v["breakdown"]["stages_us"][stage]
            mean_total = v["breakdown"]["total_us"]["mean"]
            cells.append(f"{_pp(b, 'us')} ({b['mean'] / mean_total:.0%})" if b.get("n") else "-")
        lines.append(f"| {STAGE_LABELS[stage]} | " + " | ".join(cells) + " |")
    lines.append("| **total (instrumented)** | " + " | ".join(
        _pp(v["breakdown"]["total_us"], "us") for v in ov["variants"].values()) + " |")
    return "\n".join(lines) + "\n"


def verdict(res: dict[str, Any]) -> list[str]:
    out = ["targets (LLM-path overhead = decide − model time, on the cases that reach the model):"]

    def line(name: str, value: float, target: float) -> None:
        out.append(f"  {'MET    ' if value <= target else 'NOT MET'} {name}: {value:,.3f} (<= {target:,})")
    for name, v in res["overhead"]["variants"].items():
        o = v["timing"]["overhead_us"]
        line(f"{name} overhead p50 ms", o["p50"] / 1e3, TARGETS["overhead_p50_ms"])
        line(f"{name} overhead p99 ms", o["p99"] / 1e3, TARGETS["overhead_p99_ms"])
    for key in ("rulebridge_demo", "rulebridge"):
        r = res["calls"][key]
        if key == "rulebridge" and r["cases"] == DEMO_CASES:
            continue
        ok = r["model_calls"] == r["reached_model"] + r["schema_repairs"] + r["guard_repairs"] \
            and r["reached_model"] <= r["undecided"]
        out.append(f"  {'MET    ' if ok else 'NOT MET'} model calls == cases no rule decided + repairs "
                   f"({r['cases']:,} cases): {r['invariant']}")
    rb, bl = res["calls"]["rulebridge"], res["calls"]["baseline"]
    out.append(f"  model calls per 1,000 cases: rulebridge {rb['calls_per_1000']:,.1f} vs LLM-decides-everything "
               f"{bl['calls_per_1000']:,.1f} ({rb['model_calls'] / bl['model_calls']:.1%} of the baseline's calls, "
               f"{rb['prompt_tokens_total'] / bl['prompt_tokens_total']:.1%} of its prompt tokens)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/llm_path.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000, help="cases of the demo stream (default 1000; the first "
                    f"{DEMO_CASES} are `rulebridge demo`'s)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per measured loop")
    ap.add_argument("--min-calls", type=int, default=300, help="at least this many decisions per measured loop")
    ap.add_argument("--seed", type=int, default=7, help="the demo stream's seed (the demo uses 7)")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: the {DEMO_CASES} demo cases, short loops")
    ap.add_argument("--json", type=Path, help="write all results and the machine description as JSON")
    ap.add_argument("--profile", type=Path, metavar="FILE", help="cProfile the as_recorded loop into FILE")
    args = ap.parse_args(argv)
    if args.quick:
        args.cases, args.seconds, args.min_calls = DEMO_CASES, 0.3, 30
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    from engine.demo import sample_cases

    mach = machine()
    print(f"# {mach['cpu']}, {mach['cores']} cores, {mach['ram']}, Python {mach['python']}, load "
          f"{mach['load']}; " + ", ".join(f"{k} {v}" for k, v in mach["packages"].items()), flush=True)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rulebridge-llm-bench-") as tmp:
        engine = open_engine(Path(tmp))
        author = load_demo_author()
        tokenizer, count_tokens = token_counter()
        cases = sample_cases(engine.ws, max(args.cases, DEMO_CASES), seed=args.seed)
        demo = cases[:DEMO_CASES]
        if args.seed == 7:  # the same cases as `rulebridge demo`
            assert demo == sample_cases(engine.ws, DEMO_CASES), "the stream does not start with the demo's cases"
        cases = cases[:args.cases]

        # 1. correctness first: the demo author decides the demo cases exactly as the recorded file does
        log(f"replaying {DEMO_RESPONSES.name} over the {DEMO_CASES} demo cases ...")
        calls: dict[str, Any] = {}
        calls["rulebridge_demo_replay"] = run_stream(engine, demo, ReplayModelCounted(DEMO_RESPONSES), count_tokens)
        calls["rulebridge_demo"] = run_stream(engine, demo, InstantModel(author, "demo-author"), count_tokens)
        mism = [c["id"] for c, a, b in zip(demo, calls["rulebridge_demo_replay"]["signatures"],
                                           calls["rulebridge_demo"]["signatures"], strict=True) if a != b]
        assert not mism, f"the demo author and the recorded file disagree on {mism[:5]}"
        log(f"model calls: rulebridge and LLM-decides-everything over {len(cases)} cases ...")
        calls["baseline_demo"] = run_stream(engine, demo, InstantModel(author, "demo-author"), count_tokens,
                                            baseline=True)
        calls["rulebridge"] = run_stream(engine, cases, InstantModel(author, "demo-author"), count_tokens)
        calls["baseline"] = run_stream(engine, cases, InstantModel(author, "demo-author"), count_tokens,
                                       baseline=True)
        llm_cases = [c for c, sig in zip(cases, calls["rulebridge"]["signatures"], strict=True) if sig[4] > 0]
        for r in calls.values():
            r.pop("signatures")
        gc.collect()

        # 2. the LLM path's overhead on the cases that reach the model
        overhead = run_overhead(engine, llm_cases, author, seconds=args.seconds, min_calls=args.min_calls, log=log,
                                profile=args.profile)
    res = {"machine": mach, "argv": sys.argv if argv is None else argv, "tokenizer": tokenizer,
           "demo_mismatches": len(mism), "calls": calls, "overhead": overhead,
           "config": {k: getattr(engine.fallback.config, k)
                      for k in ("max_repairs", "guard_repairs", "timeout_s", "retries")}}
    res["verdict"] = verdict(res)
    res["machine"]["load_end"] = load()
    print()
    print(markdown(res))
    print("\n".join(res["verdict"]))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; load average at the end {res['machine']['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    return 0


class ReplayModelCounted:
    """`ReplayModel` over the recorded demo file, keeping prompts and answers like `InstantModel`."""

    def __init__(self, path: Path):
        from engine.llm.clients import ReplayModel, ResponseFile

        self.inner = ReplayModel(ResponseFile(path))
        self.name = self.inner.name
        self.prompts: list[list[dict[str, str]]] = []
        self.model_ns = 0

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def complete(self, messages: list[dict[str, str]], *, timeout: float) -> Any:
        self.prompts.append([dict(m) for m in messages])
        return self.inner.complete(messages, timeout=timeout)


if __name__ == "__main__":
    raise SystemExit(main())
