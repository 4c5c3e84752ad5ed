"""The headline figures: what a caller of `Engine.decide` gets, on a stream of distinct cases.

    python benchmarks/headline.py --quick                       # smoke run, ~20 s
    python benchmarks/headline.py --json headline.json          # latency, executed, throughput (~10 min)
    python benchmarks/headline.py --part throughput --pg postgresql+psycopg://u:p@host/db
    python benchmarks/headline.py --part long --long 200000 --long-rules 2000 --long-matcher index

The rules, the graph and the cases are those of `benchmarks/rule_path.py` (`ruleset_yaml`,
`make_workspace`, `prepare_graph`, seed 7): invoice rules at 20, 200 and 2,000 rules (at 2,000
a case matches ~127 rules), a generated Brightwater graph on an on-disk Oxigraph store. Unlike
rule_path's matrix, which goes round-robin over 500 cases (so every graph look-up after the
first round is in the read cache), **every case here is decided once**: the stream is every
invoice of the graph in a seeded random order (9,055 at 1M triples, ~45,000 at 5M).

Parts (each configuration in its own child process: durable-rules' global state, the on-disk
store's lock, RSS that belongs to one run; each child opens its own copy of the cached store,
so an execution never changes the cache):

- `latency`: per rule count and matcher (`Engine.open(root, matcher=...)`), after `--warmup`
  cases, the distinct stream alternates two variants case by case, and a third after each:
  `audited` = `Engine.decide(case, llm=False)`, the whole call with its audit (one transaction
  in the workspace's default SQLite state database, in a temporary folder: audit events, review
  item for an escalation, the decision record for an `execute`); `stages` = the pipeline's
  DECIDE stages alone, `engine.pipeline.decide` (payload, resolve, match, hit policy,
  consequence, gate), nothing written — stripped, labelled so; `audited, repeated` =
  `Engine.decide` of a warm-up case again (its graph reads cached), the figure rule_path's
  round-robin gives. No model is configured: `llm=False` changes nothing but says so.
- `executed`: at `--exec-rules` (2,000), the distinct stream alternates `decide(case,
  execute=True)` and `decide(case)`: an `execute` decision (the rules' `hold_invoice`, bound to
  the `kg` connector: a SPARQL Update on the graph) is recorded, re-verified against the graph
  and executed under the ledger, every step audited. Each case once; the graph changes as it
  goes. Every `done` execution's marker must be in the graph, the chain must verify.
- `throughput`: N worker processes (`--procs`) decide distinct cases (worker i takes every
  N-th case of the stream; `--tp-triples` is larger so they do not run out) against ONE state
  database (SQLite file, and PostgreSQL with `--pg`) for `--seconds`, started together after
  their warm-up; total audited decisions/s. Then the chain is verified (`audit.verify()`) and
  the decisions in the log counted against the workers' count.
- `long` (`--long N`): `Engine.decide` with its audit, N decisions cycling over the stream of
  the `--tp-triples` graph, RSS sampled every N/20 (and the state database's size).

Percentiles: p50 = sorted[n/2], p99 = sorted[int(0.99 n)]; GC on. Results:
benchmarks/RESULTS-headline.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `engine` importable from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.machine import describe, load  # noqa: E402
from benchmarks.rule_path import DEFAULT_CACHE, RULESET, make_workspace, prepare_graph, rss_mb, sample_cases  # noqa: E402

AS_OF = dt.date(2026, 11, 1)
ALL = 10**9  # "every invoice of the graph" for sample_cases
# The targets of issue 11 (2 cores, 2,000 rules x 1M triples, distinct cases).
TARGETS = {"audited_p50_us": 500.0, "audited_p99_us": 2000.0, "stages_p50_us": 200.0, "executed_p50_us": 1000.0,
           "audited_per_s_2procs": 3 * 1700.0}


# -- helpers -----------------------------------------------------------------------------------------
def stats(us: list[float]) -> dict[str, Any]:
    """n, p50, p99, mean and max of latencies in µs."""
    if not us:
        return {"n": 0}
    s = sorted(us)
    n = len(s)
    return {"n": n, "p50": round(s[n // 2], 1), "p99": round(s[min(n - 1, int(n * 0.99))], 1),
            "mean": round(statistics.fmean(s), 1), "max": round(s[-1], 1)}


def machine() -> dict[str, Any]:
    """CPU, cores, RAM, load, Python and package versions."""
    return describe(("durable_rules", "pyoxigraph", "SQLAlchemy", "psycopg", "pydantic", "psutil"))


def bench_workspace(tmp: Path, n_rules: int, triples: int, *, cache: Path, seed: int, name: str = "ws") -> Path:
    """A generated workspace under `tmp` on its own copy of the cached on-disk store."""
    data, store = prepare_graph(triples, cache, seed=seed, log=lambda m: print(m, file=sys.stderr))
    own = tmp / f"{name}-store"
    shutil.copytree(store, own)
    return make_workspace(tmp / name, n_rules, data, store_dir=own, seed=seed)


def open_engine(root: Path, matcher: str, *, state: str | None = None, execute: bool = False,
                serving: bool = True) -> Any:
    """The engine, warmed, with the stores a decision writes opened (first use is not a decision).

    `serving`: a process that decides from now on, as `rulebridge serve` does — `warm(freeze=True)`
    takes what is loaded out of the garbage collector's way. The parent that only creates the
    tables or verifies the chain does not freeze: it drops the engine and its graph store after."""
    from engine.api import Engine

    e = Engine.open(root, matcher=matcher, clock=lambda: AS_OF, state=state)
    e.warm(freeze=serving)
    _ = e.audit, e.decisions, e.queue
    if execute:
        _ = e.executor
    return e


# -- latency ---------------------------------------------------------------------------------------------
def run_latency(cfg: dict[str, Any]) -> dict[str, Any]:
    """Audited, stages-alone and audited-repeated latencies on the distinct stream, interleaved."""
    from engine.case import Case
    from engine.pipeline import decide as pipeline_decide

    tmp = Path(tempfile.mkdtemp(prefix="rb-headline-"))
    try:
        root = bench_workspace(tmp, cfg["rules"], cfg["triples"], cache=Path(cfg["cache"]), seed=cfg["seed"])
        t0 = time.perf_counter()
        e = open_engine(root, cfg["matcher"])
        res: dict[str, Any] = {"open_s": round(time.perf_counter() - t0, 2), "triples_actual": len(e.ws.store)}
        cases = sample_cases(e.ws.store, ALL, seed=cfg["seed"])
        warm, rest = cases[: cfg["warmup"]], cases[cfg["warmup"]:]
        prof_cases: list[dict[str, Any]] = []
        if cfg.get("profile"):
            k = min(1000, len(rest) // 5)
            prof_cases, rest = rest[-k:], rest[:-k]
        if cfg.get("limit"):
            rest = rest[: cfg["limit"]]
        res.update(invoices=len(cases), warmup=len(warm), distinct_timed=len(rest))
        for c in warm:
            e.decide(c, llm=False)
        deciding = e.deciding
        audited: list[float] = []
        stages: list[float] = []
        repeated: list[float] = []
        by_stage: dict[str, list[float]] = defaultdict(list)
        outcomes: Counter[str] = Counter()
        head0 = e.audit.head().count
        clock = time.perf_counter
        gc.collect()
        t_all = clock()
        for i, c in enumerate(rest):
            if i % 2 == 0:
                a = clock()
                d = e.decide(c, llm=False)
                us = (clock() - a) * 1e6
                audited.append(us)
                outcomes[d.outcome._value_] += 1
                for k, v in d.timings_us.items():
                    by_stage[k].append(v)
                by_stage["record (rest of the call)"].append(us - sum(d.timings_us.values()))
            else:
                case = Case.from_json(c)
                a = clock()
                pipeline_decide(deciding, case, llm=False)
                stages.append((clock() - a) * 1e6)
            w = warm[i % len(warm)]
            a = clock()
            e.decide(w, llm=False)
            repeated.append((clock() - a) * 1e6)
        res["wall_s"] = round(clock() - t_all, 1)
        res["audit_events_per_decision"] = round((e.audit.head().count - head0) / (len(audited) + len(repeated)), 2)
        res["audited"] = stats(audited)
        res["stages"] = stats(stages)
        res["audited_repeated"] = stats(repeated)
        res["by_stage_p50"] = {k: stats(v)["p50"] for k, v in by_stage.items()}
        res["outcomes"] = dict(outcomes)
        m = e.matcher_for(e.ws.rulesets[RULESET])
        res["matcher_stats"] = dict(getattr(m, "stats", {}) or {})
        res["rss_mb"] = round(rss_mb(), 1)
        if prof_cases:
            import cProfile
            import io
            import pstats

            pr = cProfile.Profile()
            pr.enable()
            for c in prof_cases:
                e.decide(c, llm=False)
            pr.disable()
            buf = io.StringIO()
            st = pstats.Stats(pr, stream=buf)
            st.sort_stats("tottime").print_stats(35)
            st.sort_stats("cumulative").print_stats(45)
            Path(cfg["profile"]).write_text(
                f"# Engine.decide with its audit, {len(prof_cases)} distinct cases, {cfg['rules']} rules, "
                f"{res['triples_actual']} triples, matcher {cfg['matcher']}\n" + buf.getvalue(), encoding="utf-8")
        e.close()
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- executed ------------------------------------------------------------------------------------------------
def run_executed(cfg: dict[str, Any]) -> dict[str, Any]:
    """`decide(execute=True)` and `decide()` alternating on the distinct stream; the graph changes."""
    tmp = Path(tempfile.mkdtemp(prefix="rb-headline-"))
    try:
        root = bench_workspace(tmp, cfg["rules"], cfg["triples"], cache=Path(cfg["cache"]), seed=cfg["seed"])
        e = open_engine(root, cfg["matcher"], execute=True)
        cases = sample_cases(e.ws.store, ALL, seed=cfg["seed"])
        warm, rest = cases[: cfg["warmup"]], cases[cfg["warmup"]:]
        if cfg.get("limit"):
            rest = rest[: cfg["limit"]]
        for c in warm:
            e.decide(c, llm=False, execute=True)
        rows: dict[str, list[float]] = defaultdict(list)
        execution: Counter[str] = Counter()
        markers = done = 0
        clock = time.perf_counter
        gc.collect()
        for i, c in enumerate(rest):
            ex = i % 2 == 0
            a = clock()
            d = e.decide(c, llm=False, execute=ex)
            us = (clock() - a) * 1e6
            o = d.outcome._value_
            if ex and o == "execute":
                got = (d.execution or {}).get("outcome", "missing")
                execution[got] += 1
                if got == "done":
                    done += 1
                    markers += all(e.ws.store.executed(st["key"]) is not None
                                   for st in (d.execution or {}).get("steps", []))
                rows["executed" if got == "done" else f"execute, {got}"].append(us)
            else:
                rows[f"{'execute=True' if ex else 'recorded only'}: {o}"].append(us)
        report = e.audit.verify()
        res = {"triples_actual": len(e.ws.store), "invoices": len(cases), "distinct_timed": len(rest),
               "rows": {k: stats(v) for k, v in sorted(rows.items())}, "execution": dict(execution),
               "graph_markers": markers, "chain_ok": report.ok, "chain_events": report.checked}
        e.close()
        if not (done and markers == done and report.ok):
            raise SystemExit(f"executed run is not right: {res}")
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- throughput -----------------------------------------------------------------------------------------------
def run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """One throughput worker: open, warm up, say `ready`, wait for `go`, decide for `seconds`."""
    e = open_engine(Path(cfg["root"]), cfg["matcher"], state=cfg["state"])
    cases = sample_cases(e.ws.store, ALL, seed=cfg["seed"])
    n, i, w = cfg["procs"], cfg["index"], cfg["warmup"]
    warm = cases[i * w:(i + 1) * w]
    mine = cases[n * w:][i::n]
    for c in warm:
        e.decide(c, llm=False)
    print("ready", flush=True)
    sys.stdin.readline()
    us: list[float] = []
    errors: Counter[str] = Counter()
    clock = time.perf_counter
    cpu0 = time.process_time()
    t0 = clock()
    deadline = t0 + cfg["seconds"]
    k = 0
    while True:
        c = mine[k % len(mine)]
        a = clock()
        try:
            e.decide(c, llm=False)
        except Exception as exc:  # noqa: BLE001  (counted and reported: a lost write is a result)
            errors[type(exc).__name__] += 1
        b = clock()
        us.append((b - a) * 1e6)
        k += 1
        if b >= deadline:
            break
    wall = clock() - t0
    out = {"decisions": k, "warmup": len(warm), "seconds": wall, "per_s": k / wall, "cpu_s": time.process_time() - cpu0,
           "repeats": max(0, k - len(mine)), "errors": dict(errors), "latency": stats(us)}
    e.close()
    return out


def reset_pg(url: str) -> None:
    """Drop every table of the benchmark's PostgreSQL database (its own database: see --pg)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()


def run_throughput(args: argparse.Namespace, n_rules: int, procs: int, matcher: str, backend: str) -> dict[str, Any]:
    """`procs` workers against one state database for `--seconds`; the chain verified after."""
    import psutil
    from sqlalchemy import create_engine, text

    tmp = Path(tempfile.mkdtemp(prefix="rb-headline-tp-"))
    try:
        roots = [bench_workspace(tmp, n_rules, args.tp_triples, cache=args.cache, seed=args.seed, name=f"ws{i}")
                 for i in range(procs)]
        if backend == "sqlite":
            state = f"sqlite:///{tmp / 'state.db'}"
        else:
            state = args.pg
            reset_pg(state)
        # The tables are created once, before the workers race to it; the graph store is released
        # (RocksDB: one process at a time) when the engine is collected.
        e = open_engine(roots[0], matcher, state=state, serving=False)
        e.close()
        del e
        gc.collect()
        workers = []
        for i, root in enumerate(roots):
            cfg = {"kind": "worker", "root": str(root), "matcher": matcher, "state": state, "seed": args.seed,
                   "procs": procs, "index": i, "warmup": args.tp_warmup, "seconds": args.seconds}
            workers.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for p in workers:
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "ready":
                for q in workers:
                    q.kill()
                raise SystemExit(f"a throughput worker failed to start: {line!r}")
        load0 = load()
        psutil.cpu_percent(None)
        for p in workers:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in workers:
            out, _ = p.communicate(timeout=args.seconds + 300)
            if p.returncode != 0:
                raise SystemExit(f"a throughput worker failed (exit {p.returncode})")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        cpu_all = psutil.cpu_percent(None)
        total = sum(o["decisions"] for o in outs)
        decided = total + sum(o["warmup"] for o in outs)
        t0 = time.perf_counter()
        e = open_engine(roots[0], matcher, state=state, serving=False)
        report = e.audit.verify()
        verify_s = time.perf_counter() - t0
        db = create_engine(state)
        with db.connect() as c:
            logged = c.execute(text("SELECT COUNT(DISTINCT decision_id) FROM audit_events")).scalar_one()
        db.dispose()
        e.close()
        res = {"rules": n_rules, "procs": procs, "matcher": matcher, "backend": backend,
               "triples_actual": args.tp_triples, "seconds": args.seconds,
               "decisions": total, "per_s": round(sum(o["per_s"] for o in outs)),
               "per_worker": [round(o["per_s"]) for o in outs], "cpu_s": [round(o["cpu_s"], 1) for o in outs],
               "p50": round(statistics.fmean(o["latency"]["p50"] for o in outs), 1),
               "p99": max(o["latency"]["p99"] for o in outs), "repeats": sum(o["repeats"] for o in outs),
               "errors": dict(sum((Counter(o["errors"]) for o in outs), Counter())),
               "chain_ok": report.ok, "chain_events": report.checked, "verify_s": round(verify_s, 1),
               "decisions_in_log": logged, "decisions_made": decided,
               "load_before": load0, "load_after": load(), "system_cpu_pct": cpu_all}
        if not report.ok or logged != decided:
            raise SystemExit(f"throughput run is not right: {res}")
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- long --------------------------------------------------------------------------------------------------------
def run_long(cfg: dict[str, Any]) -> dict[str, Any]:
    """`Engine.decide` with its audit `long` times over the stream; RSS every long/20."""
    tmp = Path(tempfile.mkdtemp(prefix="rb-headline-long-"))
    try:
        root = bench_workspace(tmp, cfg["rules"], cfg["triples"], cache=Path(cfg["cache"]), seed=cfg["seed"])
        e = open_engine(root, cfg["matcher"])
        db_file = root / ".rulebridge" / "state.db"
        cases = sample_cases(e.ws.store, ALL, seed=cfg["seed"])
        n, total = len(cases), cfg["long"]
        step = max(1, total // 20)
        samples = [(0, round(rss_mb(), 1), 0.0, 0.0)]
        t0 = time.perf_counter()
        for i in range(total):
            e.decide(cases[i % n], llm=False)
            if (i + 1) % step == 0 or i == total - 1:
                size = sum(f.stat().st_size for f in db_file.parent.glob("state.db*")) / 2**20
                samples.append((i + 1, round(rss_mb(), 1), round(time.perf_counter() - t0, 1), round(size, 1)))
        wall = time.perf_counter() - t0
        first = samples[min(2, len(samples) - 1)][1]
        res = {"rules": cfg["rules"], "matcher": cfg["matcher"], "triples_actual": len(e.ws.store), "distinct": n,
               "decisions": total, "seconds": round(wall, 1), "per_s": round(total / wall),
               "samples": samples, "rss_growth_mb": round(samples[-1][1] - first, 1),
               "chain_events": e.audit.head().count}
        e.close()
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- driving ---------------------------------------------------------------------------------------------------
def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in a child process; its result is the last line of its stdout."""
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)],
                       capture_output=True, text=True, check=False)
    sys.stderr.write(p.stderr[-4000:] if p.returncode else "")
    if p.returncode != 0:
        return {**cfg, "error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:300]}
    return {**cfg, **json.loads(p.stdout.strip().splitlines()[-1])}


def _p(s: dict[str, Any]) -> str:
    return f"{s['p50']:,.0f} / {s['p99']:,.0f}" if s.get("n") else "-"


def markdown(res: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    out: list[str] = []
    lat = [r for r in res.get("latency", []) if "error" not in r]
    if lat:
        out += ["Latency, distinct cases (p50 / p99 µs; mean µs):", "",
                ("| rules | triples | matcher | distinct cases timed | **Engine.decide, audited** | mean "
                 "| stages alone (stripped) | mean | audited, repeated case | events/decision | outcomes | load |"),
                "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in lat:
            oc = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
            out.append(f"| {r['rules']:,} | {r['triples_actual']:,} | {r['matcher']} | {r['audited']['n']:,} + "
                       f"{r['stages']['n']:,} | **{_p(r['audited'])}** | {r['audited']['mean']:,.0f} "
                       f"| {_p(r['stages'])} | {r['stages']['mean']:,.0f} | {_p(r['audited_repeated'])} "
                       f"| {r['audit_events_per_decision']} | {oc} | {r.get('load', '')} |")
        out += ["", "Where the audited call's time goes (p50 of each part, µs; `record` = the call minus the stages):",
                "", "| rules | matcher | " + " | ".join(lat[0]["by_stage_p50"]) + " |",
                "|---:|---|" + "---:|" * len(lat[0]["by_stage_p50"])]
        for r in lat:
            out.append(f"| {r['rules']:,} | {r['matcher']} | "
                       + " | ".join(f"{r['by_stage_p50'].get(k, 0):,.0f}" for k in lat[0]["by_stage_p50"]) + " |")
    ex = [r for r in res.get("executed", []) if "error" not in r]
    if ex:
        out += ["", "Executed governed decisions, distinct cases (p50 / p99 µs, n):", "",
                "| rules | triples | matcher | row | p50 / p99 | mean | n |", "|---:|---:|---|---|---:|---:|---:|"]
        for r in ex:
            for k, s in r["rows"].items():
                out.append(f"| {r['rules']:,} | {r['triples_actual']:,} | {r['matcher']} | {k} | {_p(s)} "
                           f"| {s['mean']:,.0f} | {s['n']:,} |")
    tp = [r for r in res.get("throughput", []) if "error" not in r]
    if tp:
        out += ["", "Throughput: N processes, one state database, distinct cases, fixed time:", "",
                ("| rules | matcher | state DB | processes | seconds | **audited decisions/s** | per worker "
                 "| worker p50 / p99 µs | CPU s per worker | repeats | errors | chain | load before → after "
                 "| system CPU % |"),
                "|---:|---|---|---:|---:|---:|---|---:|---|---:|---|---|---|---:|"]
        for r in tp:
            out.append(f"| {r['rules']:,} | {r['matcher']} | {r['backend']} | {r['procs']} | {r['seconds']:g} "
                       f"| **{r['per_s']:,}** | {', '.join(f'{x:,}' for x in r['per_worker'])} "
                       f"| {r['p50']:,.0f} / {r['p99']:,.0f} | {', '.join(map(str, r['cpu_s']))} | {r['repeats']} "
                       f"| {r['errors'] or 0} | {'ok' if r['chain_ok'] else 'BROKEN'}, {r['chain_events']:,} events, "
                       f"{r['decisions_in_log']:,} decisions | {r['load_before'][:1]} → {r['load_after'][:1]} "
                       f"| {r['system_cpu_pct']:.0f} |")
    lg = res.get("long")
    if lg and "error" not in lg:
        out += ["", (f"RSS over {lg['decisions']:,} audited decisions ({lg['rules']:,} rules, {lg['matcher']}, "
                     f"{lg['triples_actual']:,} triples, {lg['distinct']:,} distinct cases cycled): "
                     f"{lg['per_s']:,}/s, growth after 10 % {lg['rss_growth_mb']:+.1f} MB"), "",
                "| decisions | RSS MB | seconds | state DB MB |", "|---:|---:|---:|---:|"]
        out += [f"| {a:,} | {b} | {c} | {d} |" for a, b, c, d in lg["samples"]]
    return "\n".join(out) + "\n"


def verdict(res: dict[str, Any]) -> list[str]:
    """The issue's targets against the 2,000-rule figures, per matcher."""
    lines = []
    for r in res.get("latency", []):
        if "error" in r or r["rules"] != 2000:
            continue
        for name, v, t in (("audited p50", r["audited"]["p50"], TARGETS["audited_p50_us"]),
                           ("audited p99", r["audited"]["p99"], TARGETS["audited_p99_us"]),
                           ("stages p50", r["stages"]["p50"], TARGETS["stages_p50_us"])):
            lines.append(f"  {'MET    ' if v <= t else 'NOT MET'} {r['matcher']}: {name} {v:,.0f} µs (<= {t:,.0f})")
    for r in res.get("executed", []):
        if "error" in r or "executed" not in r["rows"]:
            continue
        v = r["rows"]["executed"]["p50"]
        t = TARGETS["executed_p50_us"]
        lines.append(f"  {'MET    ' if v <= t else 'NOT MET'} {r['matcher']}: executed p50 {v:,.0f} µs (<= {t:,.0f})")
    for r in res.get("throughput", []):
        if "error" in r or r["procs"] != 2 or r["rules"] != 2000:
            continue
        v, t = r["per_s"], TARGETS["audited_per_s_2procs"]
        lines.append(f"  {'MET    ' if v >= t else 'NOT MET'} {r['matcher']}, {r['backend']}: 2 processes "
                     f"{v:,}/s (>= {t:,.0f})")
    return (["targets at 2,000 rules:"] + lines) if lines else []


def main(argv: list[str] | None = None) -> int:
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    ap = argparse.ArgumentParser(prog="python benchmarks/headline.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="latency,executed,throughput",
                    help="comma-separated: latency, executed, throughput, long (default the first three)")
    ap.add_argument("--rules", type=ints, default=[20, 200, 2000], help="latency: rule counts")
    ap.add_argument("--matchers", default="durable,index", help="latency and executed: matchers, comma-separated")
    ap.add_argument("--triples", type=int, default=1_000_000, help="latency and executed: graph size")
    ap.add_argument("--repeat", type=int, default=1, help="latency: runs of the matrix, order alternating")
    ap.add_argument("--warmup", type=int, default=200, help="cases decided before timing (then not timed)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many distinct cases timed (0: all)")
    ap.add_argument("--exec-rules", type=int, default=2000, help="executed: rule count")
    ap.add_argument("--procs", type=ints, default=[1, 2], help="throughput: worker processes")
    ap.add_argument("--tp-rules", type=ints, default=[20, 2000], help="throughput: rule counts")
    ap.add_argument("--tp-matchers", default="", help="throughput: matchers (default: --matchers)")
    ap.add_argument("--tp-triples", type=int, default=5_000_000, help="throughput and long: graph size")
    ap.add_argument("--tp-warmup", type=int, default=50, help="throughput: warm-up cases per worker")
    ap.add_argument("--seconds", type=float, default=10.0, help="throughput: seconds per run")
    ap.add_argument("--pg", default="", help="throughput on PostgreSQL too: a URL of a database of its own "
                    "(its public schema is dropped and re-created before each run)")
    ap.add_argument("--long", type=int, default=0, metavar="N", help="long: audited decisions, RSS every N/20")
    ap.add_argument("--long-rules", type=int, default=2000)
    ap.add_argument("--long-matcher", default="index")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the audited decide at the largest rule count")
    ap.add_argument("--quick", action="store_true", help="smoke run (~20 s): 20 rules, 20k triples, short runs")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"graph cache (default {DEFAULT_CACHE})")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="write all results and the machine description as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # a JSON configuration, run in this process
    args = ap.parse_args(argv)
    if args.child:
        cfg = json.loads(args.child)
        run = {"latency": run_latency, "executed": run_executed, "worker": run_worker, "long": run_long}[cfg["kind"]]
        print(json.dumps(run(cfg), default=str), flush=True)
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.rules, args.triples, args.tp_triples, args.exec_rules = [20], 20_000, 20_000, 20
        args.warmup, args.tp_warmup, args.limit, args.seconds = 10, 5, 120, 1.0
        args.procs, args.tp_rules, args.tp_matchers = [1, 2], [20], "index"
    parts = set(args.part.split(","))
    matchers = args.matchers.split(",")
    mach = machine()
    print(f"# {mach['cpu']}, {mach['cores']} cores, {mach['ram']}, Python {mach['python']}, load {mach['load']}; "
          + ", ".join(f"{k} {v}" for k, v in mach["packages"].items()), flush=True)
    base = {"triples": args.triples, "cache": str(args.cache), "seed": args.seed, "warmup": args.warmup,
            "limit": args.limit}
    res: dict[str, Any] = {"machine": mach, "argv": sys.argv}
    t_all = time.perf_counter()
    if "latency" in parts:
        res["latency"] = []
        for rep in range(args.repeat):
            for n in args.rules:
                for m in matchers if rep % 2 == 0 else matchers[::-1]:
                    cfg = {**base, "kind": "latency", "rules": n, "matcher": m, "repeat": rep}
                    if args.profile and n == max(args.rules):
                        cfg["profile"] = f"{args.profile}.{m}"
                    t0 = time.perf_counter()
                    r = child(cfg)
                    r["load"] = load()[:1]
                    res["latency"].append(r)
                    if "error" in r:
                        print(f"latency {n} rules {m}: ERROR {r['error']}", flush=True)
                    else:
                        print(f"latency {n:>5} rules {m:>8}: audited {_p(r['audited'])} µs, stages {_p(r['stages'])}, "
                              f"repeated {_p(r['audited_repeated'])} ({r['distinct_timed']:,} distinct cases, "
                              f"{time.perf_counter() - t0:.0f} s, load {r['load']})", flush=True)
    if "executed" in parts:
        res["executed"] = []
        for m in matchers:
            r = child({**base, "kind": "executed", "rules": args.exec_rules, "matcher": m})
            res["executed"].append(r)
            print(f"executed {args.exec_rules} rules {m}: " + (r.get("error") or json.dumps(r["rows"])), flush=True)
    if "throughput" in parts:
        res["throughput"] = []
        backends = ["sqlite"] + (["postgresql"] if args.pg else [])
        for n in args.tp_rules:
            for m in (args.tp_matchers or args.matchers).split(","):
                for b in backends:
                    for procs in args.procs:
                        try:
                            r = run_throughput(args, n, procs, m, b)
                        except SystemExit as exc:
                            r = {"rules": n, "procs": procs, "matcher": m, "backend": b, "error": str(exc)[:500]}
                        res["throughput"].append(r)
                        print(f"throughput {n} rules {m} {b} x{procs}: "
                              + (r.get("error") or f"{r['per_s']:,}/s ({r['per_worker']}), chain "
                                 f"{'ok' if r['chain_ok'] else 'BROKEN'}, repeats {r['repeats']}, "
                                 f"load {r['load_before'][:1]}→{r['load_after'][:1]}"), flush=True)
    if "long" in parts:
        n = args.long or 20_000
        res["long"] = child({"kind": "long", "rules": args.long_rules, "matcher": args.long_matcher,
                             "triples": args.tp_triples, "cache": str(args.cache), "seed": args.seed, "long": n})
        print(f"long: {res['long'].get('error') or res['long']['samples']}", flush=True)
    print()
    print(markdown(res))
    print("\n".join(verdict(res)))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s, load now {load()}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
