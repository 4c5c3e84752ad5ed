"""Benchmark of the in-process rule path: resolve facts, match, decide (`Engine.decide`).

    python benchmarks/rule_path.py --quick                      # smoke run, under a minute
    python benchmarks/rule_path.py                              # 20/200/2,000 rules x 10k/100k/1M triples
    python benchmarks/rule_path.py --rules 2000 --triples 1000000 --long 1000000
    python benchmarks/rule_path.py --rules 2000 --triples 1000000 --profile prof.txt

Each configuration runs in its own child process (durable-rules keeps global state, the
on-disk graph takes a lock, and RSS must belong to one configuration). For each one the
script generates a ruleset (seeded) into a temporary workspace that uses the real ontology
of `knowledge_graph/`, opens a generated graph of the given size from an on-disk Oxigraph
store (built once and cached under `--cache`, never in the repository), samples invoice
cases from it, and measures on the same cases:

- `decide`: `Engine.decide(case)`, the whole rule path (resolve, match, hit policy, guards)
- `resolve`: the fact resolution alone (`resolve_facts`)
- `matcher`: `DurableMatcher.match(env)` (flat fact + every network), and its fallbacks
- `durable_raw`: durable-rules' own assert + retract of the exact messages the matcher
  sends each network (the flat fact plus that network's interval fields), pre-encoded
  (the matcher's floor: what is left if the adapter cost nothing)
- `linear_scan`: a plain-Python scan of the same compiled atoms over the same flat facts
- `reference`: the reference evaluator (`match_reference`) over the resolved facts
- `zen`: GoRules zen-engine evaluating the same rules as one JDM decision table
  (hit policy `collect`) over the same flat facts

Results go to stdout as a table and, with `--json`, to a file. See benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import operator
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `engine` importable from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.machine import describe  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("RULEBRIDGE_BENCH_CACHE", Path(tempfile.gettempdir()) / "rulebridge-bench-cache"))
BW = "https://brightwater.example/ontology#"
BWD = "https://brightwater.example/id/"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
CASE_TYPE = "bench.invoice"
RULESET = "bench.invoice_rules"
AS_OF = "2026-11-01"

# -- the generated rulesets ------------------------------------------------------------------------
# Enum-valued scalar paths and their values, as the graph generator writes them.
ENUMS: dict[str, list[str]] = {
    "vendor.status": ["approved", "pending", "blocked", "suspended"],
    "vendor.category": ["fasteners", "safety", "office", "packaging", "tools", "janitorial", "electrical"],
    "vendor.country": ["US", "CA", "MX", "DE", "GB"],
    "invoice.currency": ["USD", "EUR", "GBP"],
    "invoice.status": ["received", "approved", "paid", "on_hold", "rejected"],
    "po.status": ["open", "closed", "cancelled"],
}
ENUM_WEIGHTS = {"vendor.status": 3, "vendor.category": 4, "vendor.country": 1, "invoice.currency": 1,
                "invoice.status": 2, "po.status": 2}
# A few quantified / computed conditions (not expressible in the Rete network: synthetic fields).
QUANTIFIERS = [
    "any(l.amount > {t} for l in invoice.invoice_lines)",
    "all(exists(l.po_line) for l in invoice.invoice_lines)",
    "any(not exists(l.po_line) for l in invoice.invoice_lines)",
    "count(l for l in invoice.invoice_lines if l.unit_price > {t}) >= 2",
    "len(invoice.invoice_lines) > 2",
]
QUANT_THRESHOLDS = [50, 100, 500, 1000, 5000]


def _money(rng: random.Random, lo: float, hi: float) -> int:
    """A log-uniform amount in [lo, hi), rounded to a 'business' number."""
    v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    mag = 10 ** max(0, int(math.log10(v)) - 1)
    return int(v // mag * mag)


def rule_conditions(rng: random.Random) -> list[str]:
    """The `when` list of one generated rule: enum and id equalities, overlapping ranges, a few quantifiers."""
    when: list[str] = []
    paths = list(ENUMS)
    weights = [ENUM_WEIGHTS[p] for p in paths]
    chosen: list[str] = []
    chosen.append(rng.choices(paths, weights)[0])
    if rng.random() < 0.45:
        p = rng.choices(paths, weights)[0]
        if p not in chosen:
            chosen.append(p)
    for p in chosen:
        when.append(f'{p} == "{rng.choice(ENUMS[p])}"')
    if rng.random() < 0.04:  # an identifier (the vendor's id): equality on a near-unique value
        when.append(f'vendor.vendor_id == "{1001 + rng.randrange(400)}"')
    r = rng.random()
    if r < 0.85:  # overlapping amount bands: the case that stresses durable-rules' 64-entry stack
        lo = _money(rng, 20, 200_000)
        hi = int(lo * rng.uniform(1.5, 30))
        if r < 0.55:
            when += [f"invoice.amount >= {lo}", f"invoice.amount < {hi}"]
        elif r < 0.7:
            when.append(f"invoice.amount >= {lo}")
        else:
            when.append(f"invoice.amount < {hi}")
    r = rng.random()
    if r < 0.12:
        when.append(f"vendor.risk_rating >= {rng.randint(2, 5)}")
    elif r < 0.22:
        when.append(f"po.open_amount > {_money(rng, 100, 100_000)}")
    elif r < 0.28:
        when.append(f"vendor.payment_terms_days <= {rng.choice([15, 30, 45, 60])}")
    if rng.random() < 0.05:
        when.append("not vendor.sanctioned")
    if rng.random() < 0.05:
        when.append(rng.choice(QUANTIFIERS).format(t=rng.choice(QUANT_THRESHOLDS)))
    return when or [f'vendor.status == "{rng.choice(ENUMS["vendor.status"])}"']


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ruleset_yaml(n_rules: int, *, seed: int = 7) -> str:
    """A ruleset of `n_rules` generated rules over invoices, vendors and purchase orders."""
    rng = random.Random(seed * 1_000_003 + n_rules)
    out = [f"ruleset: {RULESET}",
           f"description: generated benchmark ruleset ({n_rules} rules, seed {seed})",
           f"on: {CASE_TYPE}",
           "hit_policy: priority",
           "case:",
           "  invoice: Invoice",
           "facts:",
           "  invoice: case.invoice",
           "  vendor: case.invoice.vendor",
           "  po: case.invoice.purchase_order",
           "rules:"]
    for i in range(n_rules):
        when = rule_conditions(rng)
        out.append(f"  - id: bench.r{i:05d}")
        out.append(f"    priority: {rng.randint(1, 1000)}")
        out.append("    when:")
        out.extend(f"      - {_yaml_str(w)}" for w in when)
        k = rng.random()
        if k < 0.5:
            out.append("    then: {action: hold_invoice, params: {invoice: case.invoice, "
                       f"reason: \"held by rule {i}\"}}}}")
        elif k < 0.8:
            out.append(f"    then: {{escalate: \"rule {i}: a person decides\"}}")
        elif k < 0.9:
            out.append(f"    then: {{deny: \"rule {i}: refused\"}}")
        else:
            out.append(f"    then: {{no_action: \"rule {i}: nothing to do\"}}")
    out += ["guards:",
            "  - id: bench.guard.sanctioned",
            "    deny_when: vendor.sanctioned",
            "    message: the vendor is sanctioned"]
    return "\n".join(out) + "\n"


def make_workspace(root: Path, n_rules: int, data_dir: Path, *, store_dir: Path | None = None,
                   seed: int = 7) -> Path:
    """Write a workspace at `root`: the real ontology, queries and actions, a generated ruleset.

    With `store_dir` the graph is an on-disk Oxigraph store (`oxigraph-disk`); without it,
    the data files under `data_dir` are loaded into memory.
    """
    root.mkdir(parents=True, exist_ok=True)
    rules = root / "rules"
    rules.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "rules" / "actions.yaml", rules / "actions.yaml")
    (rules / "bench.yaml").write_text(ruleset_yaml(n_rules, seed=seed), encoding="utf-8")
    kg = REPO / "knowledge_graph"
    backend = "oxigraph-disk" if store_dir else "oxigraph"
    toml = [
        "[workspace]", 'name = "bench"', "",
        "[rules]", 'dir = "rules"', 'actions = "rules/actions.yaml"', "",
        "[graph]", f'backend = "{backend}"', f"data = {json.dumps(str(data_dir))}",
        f"ontology = {json.dumps(str(kg / 'ontology'))}", f"shapes = {json.dumps(str(kg / 'shapes'))}",
        f"queries = {json.dumps(str(kg / 'queries'))}",
    ]
    if store_dir:
        toml.append(f"store_path = {json.dumps(str(store_dir))}")
    toml += ["", "[prefixes]", f'bw = "{BW}"', f'bwd = "{BWD}"', ""]
    (root / "rulebridge.toml").write_text("\n".join(toml), encoding="utf-8")
    return root


def prepare_graph(triples: int, cache: Path, *, seed: int = 7, log: Callable[[str], None] = print
                  ) -> tuple[Path, Path]:
    """The cached N-Triples file and on-disk Oxigraph store of a generated graph (built on first use)."""
    from benchmarks import brightwater
    from engine.kg.store import OxigraphStore

    base = cache / f"g{triples}_s{seed}"
    data, store = base / "data", base / "store"
    nt = data / "graph.nt"
    if not nt.exists():
        data.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = nt.with_suffix(".part")
        n = brightwater.write(tmp, seed=seed, triples=triples, fmt="nt")
        tmp.rename(nt)
        log(f"generated {n} triples in {time.perf_counter() - t0:.1f} s -> {nt}")
    done = base / "store.ok"
    if not done.exists():
        shutil.rmtree(store, ignore_errors=True)
        t0 = time.perf_counter()
        s = OxigraphStore.from_files([nt], path=store)
        del s
        gc.collect()
        done.write_text("ok\n")
        log(f"built on-disk store in {time.perf_counter() - t0:.1f} s -> {store}")
    compacted = base / "store.optimized"
    if not compacted.exists():
        # A bulk-loaded store is compacted by RocksDB's background thread the first time it is opened
        # (measured: ~3 s of a second core for 5M triples, ~0.5 s for 1M), which would run during the
        # measurements of every run that opens a fresh copy. Compact the cached store once, now.
        import pyoxigraph as ox

        t0 = time.perf_counter()
        s = ox.Store(str(store))
        s.optimize()
        s.flush()
        del s
        gc.collect()
        compacted.write_text("ok\n")
        log(f"compacted the on-disk store in {time.perf_counter() - t0:.1f} s")
    return data, store


def sample_cases(store: Any, k: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """`k` invoice cases spread over the graph (seeded)."""
    import pyoxigraph as ox

    ids = sorted(q.subject.value for q in store.store.quads_for_pattern(
        None, ox.NamedNode(RDF_TYPE), ox.NamedNode(BW + "Invoice"), None))
    rng = random.Random(seed)
    picked = rng.sample(ids, min(k, len(ids)))
    return [{"type": CASE_TYPE, "payload": {"invoice": iri}, "as_of": AS_OF} for iri in picked]


# -- the same rules, three other ways ------------------------------------------------------------------
_PYOPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
          ">=": operator.ge}


def rule_atoms(rs: Any) -> list[tuple[str, list[tuple[str, str, Any]]]]:
    """Each rule as `(rule id, [(flat field, op, literal), ...])`, exactly as the matcher builds it."""
    from engine.match.durable import _encode

    out = []
    for rule in rs.rules:
        atoms = []
        for c in rule.conditions:
            if c.atom is not None:
                path, op, lit = c.atom
                atoms.append((rs.network[path], op, _encode(lit)))
            else:
                atoms.append((c.synthetic, "==", True))
        out.append((rule.id, atoms))
    return out


def linear_scanner(rs: Any) -> Callable[[dict[str, Any]], list[str]]:
    """A plain-Python linear scan of the compiled atoms over a flat fact."""
    compiled = [(rid, [(k, _PYOPS[op], lit) for k, op, lit in atoms]) for rid, atoms in rule_atoms(rs)]

    def scan(fact: dict[str, Any]) -> list[str]:
        out = []
        get = fact.get
        for rid, atoms in compiled:
            for k, fn, lit in atoms:
                v = get(k)
                if v is None or not fn(v, lit):
                    break
            else:
                out.append(rid)
        return out
    return scan


def _zen_cell(atoms: list[tuple[str, Any]]) -> str:
    parts = []
    for op, lit in atoms:
        v = json.dumps(lit)
        parts.append(f"$ {op} {v}")
    return " and ".join(parts)


def zen_decision_table(rs: Any) -> dict[str, Any]:
    """The ruleset as a JDM graph (input → one decision table, hit policy `collect` → output)."""
    rows = rule_atoms(rs)
    fields = sorted({k for _, atoms in rows for k, _, _ in atoms}, key=lambda k: (k[0], int(k[1:])))
    inputs = [{"id": f"in_{k}", "name": k, "field": k, "type": "expression"} for k in fields]
    outputs = [{"id": "out_rule", "name": "rule", "field": "rule", "type": "expression"}]
    rules = []
    for rid, atoms in rows:
        by_field: dict[str, list[tuple[str, Any]]] = {}
        for k, op, lit in atoms:
            by_field.setdefault(k, []).append((op, lit))
        row: dict[str, str] = {"_id": rid}
        for k in fields:
            row[f"in_{k}"] = _zen_cell(by_field[k]) if k in by_field else ""
        row["out_rule"] = json.dumps(rid)
        rules.append(row)
    return {
        "contentType": "application/vnd.gorules.decision",
        "nodes": [
            {"id": "request", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
            {"id": "table", "type": "decisionTableNode", "name": rs.name, "position": {"x": 300, "y": 0},
             "content": {"hitPolicy": "collect", "inputs": inputs, "outputs": outputs, "rules": rules}},
            {"id": "response", "type": "outputNode", "name": "Response", "position": {"x": 600, "y": 0}},
        ],
        "edges": [{"id": "e1", "sourceId": "request", "targetId": "table", "type": "edge"},
                  {"id": "e2", "sourceId": "table", "targetId": "response", "type": "edge"}],
    }


def zen_evaluator(rs: Any) -> Callable[[dict[str, Any]], list[str]] | None:
    """GoRules zen-engine over the same rules, or None when `zen-engine` is not installed."""
    try:
        import zen
    except ImportError:
        return None
    decision = zen.ZenEngine().create_decision(json.dumps(zen_decision_table(rs)))

    def evaluate(fact: dict[str, Any]) -> list[str]:
        res = decision.evaluate(fact)["result"]
        rows = res if isinstance(res, list) else [res] if res else []
        return [r["rule"] for r in rows]
    return evaluate


# -- measuring --------------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Per-call latencies of one variant, in nanoseconds."""

    name: str
    ns: list[int] = field(default_factory=list)
    wall: float = 0.0

    def summary(self) -> dict[str, Any]:
        if not self.ns:
            return {"n": 0}
        s = sorted(self.ns)
        n = len(s)
        return {"n": n, "p50_us": s[n // 2] / 1e3, "p99_us": s[min(n - 1, int(n * 0.99))] / 1e3,
                "mean_us": statistics.fmean(s) / 1e3, "max_us": s[-1] / 1e3,
                "per_s": n / self.wall if self.wall else 0.0}


def measure(name: str, fn: Callable[[Any], Any], items: list[Any], *, min_calls: int, seconds: float
            ) -> Timing:
    """Call `fn` over `items` round-robin for `seconds`, and at least `min_calls` times."""
    t = Timing(name)
    clock = time.perf_counter_ns
    for x in items[: min(len(items), 20)]:  # warm-up
        fn(x)
    deadline = time.perf_counter() + seconds
    ns = t.ns
    i, n = 0, len(items)
    start = time.perf_counter()
    while True:
        x = items[i % n]
        a = clock()
        fn(x)
        ns.append(clock() - a)
        i += 1
        if i >= min_calls and (i & 15 == 0) and time.perf_counter() > deadline:
            break
    t.wall = time.perf_counter() - start
    return t


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_config(n_rules: int, triples: int, *, cache: Path, n_cases: int, seconds: float, min_calls: int,
               long: int = 0, seed: int = 7, profile: str | None = None, log: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """Measure one (rules, triples) configuration in this process."""
    import engine.workspace as wsmod
    from engine.api import Engine
    from engine.kg.resolver import resolve_facts
    from engine.lang.payload import validate_payload
    from engine.match.reference import match_reference
    from engine.workspace import load_workspace

    res: dict[str, Any] = {"rules": n_rules, "triples": triples}
    data, store_dir = prepare_graph(triples, cache, seed=seed, log=log)
    with open(data / "graph.nt", "rb") as f:
        res["triples_actual"] = sum(1 for _ in f)
    tmp = Path(tempfile.mkdtemp(prefix="rb-bench-ws-"))
    try:
        root = make_workspace(tmp / "ws", n_rules, data, store_dir=store_dir, seed=seed)
        gc.collect()
        res["rss_start_mb"] = rss_mb()
        # 1. load + compile the rules (no graph), then build the durable-rules networks.
        t0 = time.perf_counter()
        ws0 = load_workspace(root, load_graph=False)
        t1 = time.perf_counter()
        assert not ws0.errors, [str(d) for d in ws0.errors[:5]]
        rs0 = ws0.rulesets[RULESET]
        from engine.match.durable import DurableMatcher

        DurableMatcher(rs0)  # networks are shared by content hash: the engine below reuses them
        t2 = time.perf_counter()
        res["compile_s"] = t1 - t0
        res["networks_s"] = t2 - t1
        res["load_compile_s"] = t2 - t0
        res["warnings"] = len(ws0.diagnostics)
        del ws0, rs0
        # 2. the engine, with the graph-open time taken from inside `load_workspace`.
        opened: dict[str, float] = {}
        real_open = wsmod.open_store

        def timed_open(*a: Any, **kw: Any) -> Any:
            s = time.perf_counter()
            try:
                return real_open(*a, **kw)
            finally:
                opened["s"] = time.perf_counter() - s
        wsmod.open_store = timed_open
        try:
            t0 = time.perf_counter()
            eng = Engine.open(root, matcher="durable", clock=lambda: __import__("datetime").date(2026, 11, 1))
            eng.warm()
            res["engine_open_s"] = time.perf_counter() - t0
        finally:
            wsmod.open_store = real_open
        res["graph_open_s"] = opened.get("s", float("nan"))
        ws = eng.ws
        if ws.store is None:  # e.g. another process holds the on-disk store's lock
            raise SystemExit(f"cannot open the graph store {store_dir}: "
                             + "; ".join(d.message for d in ws.diagnostics if d.code == "graph_syntax"))
        rs = ws.rulesets[RULESET]
        matcher = eng.matcher_for(rs)
        res["networks"] = len(matcher.networks)
        res["interval_paths"] = {".".join(p): px.nseg for p, px in matcher.paths.items()}  # path -> segments
        res["synthetic_fields"] = len(rs.synthetic)
        res["network_fields"] = len(rs.network)
        cases = sample_cases(ws.store, n_cases, seed=seed)
        res["cases"] = len(cases)
        gc.collect()
        res["rss_loaded_mb"] = rss_mb()
        # 3. the inputs of the narrower variants, computed once per case.
        import datetime as dt

        as_of = dt.date(2026, 11, 1)
        envs = []
        for c in cases:
            payload, _ = validate_payload(rs.case_schema, c["payload"], ws.prefixes)
            envs.append((payload, resolve_facts(rs, payload, ws.graph, as_of=as_of)[0]))
        facts = [matcher.flat_fact(env) for _, env in envs]
        # durable-rules' own work: the exact message each network gets (with its interval fields)
        # (the networks that cannot match a case are not asked: `bodies` gives None for them)
        texts = [[(net.dre, net.handle, f'{{"sid": "{net.sid()}", "id": "bench", {body}}}')
                  for net, body in zip(matcher.networks, bodies, strict=True) if body is not None]
                 for bodies in (matcher.bodies(env) for _, env in envs)]

        def durable_raw(per_net: list[tuple[Any, Any, str]]) -> int:
            n = 0
            for dre, h, text in per_net:
                r = dre.assert_fact(h, text)
                state = r[1]
                if dre.start_action_for_state(h, state):
                    n += 1
                    while dre.complete_and_start_action(h, state):
                        n += 1
                dre.retract_fact(h, text)
            return n

        # correctness first: every variant must find the same matches as the reference evaluator.
        scan = linear_scanner(rs)
        zen_eval = zen_evaluator(rs)
        ref_matches = [match_reference(rs, env) for _, env in envs]
        mism = {"matcher": 0, "linear_scan": 0, "zen": 0}
        for i, (_, env) in enumerate(envs):
            want = set(ref_matches[i])
            mism["matcher"] += set(matcher.match(env)) != want
            mism["linear_scan"] += set(scan(facts[i])) != want
            if zen_eval:
                mism["zen"] += set(zen_eval(facts[i])) != want
        res["mismatches"] = mism
        res["matches_per_case"] = statistics.fmean(len(m) for m in ref_matches) if ref_matches else 0
        outcomes: dict[str, int] = {}
        # 4. timings.
        def decide(c: dict[str, Any]) -> Any:
            d = eng.decide(c)
            return d

        for c in cases:
            o = eng.decide(c).outcome
            outcomes[o] = outcomes.get(o, 0) + 1
        res["outcomes"] = outcomes
        matcher.stats.update(cases=0, fallbacks=0, asked=0)
        timings = {}
        kw = {"min_calls": min_calls, "seconds": seconds}
        timings["decide"] = measure("decide", decide, cases, **kw)
        # The same decisions without the writes to the state database (the audit events, the
        # decision record, the review queue): the pipeline's stages alone — payload, resolve,
        # match, hit policy, consequence, gate — what the engine runs before it records anything.
        from engine.case import Case
        from engine.pipeline import decide as pipeline_decide

        as_cases = [Case.from_json(c) for c in cases]

        deciding = eng.deciding

        def in_memory(c: Any) -> Any:
            return pipeline_decide(deciding, c, llm=False)

        timings["decide_no_io"] = measure("decide_no_io", in_memory, as_cases, **kw)
        # And once more with the graph's read cache off: every look-up and named query goes to the
        # store, as for a case whose entities no earlier decision read since the graph last changed.
        kept = ws.store.reads.size
        ws.store.reads.size = 0
        ws.store.reads.reset()
        try:
            timings["decide_no_io_cold"] = measure("decide_no_io_cold", in_memory, as_cases, **kw)
        finally:
            ws.store.reads.size = kept
        res["fallbacks"] = dict(matcher.stats)
        res["last_fallback"] = matcher.last_fallback
        timings["resolve"] = measure("resolve", lambda pe: resolve_facts(rs, pe[0], ws.graph, as_of=as_of),
                                     envs, **kw)
        ws.store.reads.size = 0
        ws.store.reads.reset()
        try:
            timings["resolve_cold"] = measure("resolve_cold", lambda pe: resolve_facts(rs, pe[0], ws.graph,
                                                                                      as_of=as_of), envs, **kw)
        finally:
            ws.store.reads.size = kept
        timings["matcher"] = measure("matcher", lambda pe: matcher.match(pe[1]), envs, **kw)
        timings["flat_fact"] = measure("flat_fact", lambda pe: matcher.flat_fact(pe[1]), envs, **kw)
        timings["durable_raw"] = measure("durable_raw", durable_raw, texts, **kw)
        timings["linear_scan"] = measure("linear_scan", scan, facts, **kw)
        timings["reference"] = measure("reference", lambda pe: match_reference(rs, pe[1]), envs, **kw)
        if zen_eval:
            timings["zen"] = measure("zen", zen_eval, facts, **kw)
        res["timings"] = {k: v.summary() for k, v in timings.items()}
        del timings
        gc.collect()
        res["rss_after_mb"] = rss_mb()
        # 5. a long run: RSS sampled while deciding `long` cases.
        if long:
            samples = []
            step = max(1, long // 20)
            t0 = time.perf_counter()
            n = len(cases)
            for i in range(long):  # engine memory, not the growth of the audit table on disk
                in_memory(as_cases[i % n])
                if i % step == 0 or i == long - 1:
                    samples.append((i + 1, round(rss_mb(), 1), round(time.perf_counter() - t0, 1)))
            wall = time.perf_counter() - t0
            res["long"] = {"decisions": long, "seconds": wall, "per_s": long / wall, "rss_samples": samples,
                           "fallbacks": dict(matcher.stats)}
            # growth after warm-up: from the sample at 10 % to the last one
            first = samples[min(2, len(samples) - 1)][1]
            res["long"]["rss_growth_mb"] = samples[-1][1] - first
        if profile:
            import cProfile
            import io
            import pstats

            pr = cProfile.Profile()
            k = max(200, min(2000, int(3 / max(1e-6, res["timings"]["decide"]["mean_us"] / 1e6))))
            pr.enable()
            for i in range(k):
                eng.decide(cases[i % len(cases)])
            pr.disable()
            buf = io.StringIO()
            st = pstats.Stats(pr, stream=buf)
            st.sort_stats("tottime").print_stats(30)
            st.sort_stats("cumulative").print_stats(40)
            Path(profile).write_text(f"# {k} decisions, {n_rules} rules, {triples} triples\n" + buf.getvalue())
            res["profile"] = profile
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- reporting ----------------------------------------------------------------------------------------------
TARGETS = {"p50_us": 200.0, "p99_us": 1000.0, "per_s": 5000.0, "load_compile_s": 2.0, "graph_open_s": 1.0}


def machine() -> dict[str, Any]:
    """CPU, cores, RAM, load, Python and package versions."""
    return describe(("durable_rules", "pyoxigraph", "rdflib", "zen-engine", "psutil", "pydantic", "networkx"))


def _f(v: Any, nd: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cold(t: dict[str, Any], k: str, *, p99: bool = True) -> str:
    if k not in t:
        return "-"
    return _f(t[k]["p50_us"]) + (f" / {_f(t[k]['p99_us'])}" if p99 else "")


def _io(t: dict[str, Any], k: str) -> str:
    return _f(t["decide_no_io"][k]) if "decide_no_io" in t else "-"


def markdown(results: list[dict[str, Any]]) -> str:
    """The results as Markdown tables."""
    lines = [("| rules | triples | decide p50 µs | p99 µs | decisions/s | no I/O p50 | no I/O p99 | no I/O /s "
              "| no I/O, cold reads p50 / p99 | resolve p50 (cold) | matcher p50 | networks | fallbacks "
              "| load+compile s | graph open s | RSS start→loaded→after MB |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['rules']} | {r['triples']} | error: {r['error']} |")
            continue
        t = r["timings"]
        lines.append(
            f"| {r['rules']:,} | {r['triples_actual']:,} | {_f(t['decide']['p50_us'])} | {_f(t['decide']['p99_us'])} "
            f"| {_f(t['decide']['per_s'])} | {_io(t, 'p50_us')} | {_io(t, 'p99_us')} | {_io(t, 'per_s')} "
            f"| {_cold(t, 'decide_no_io_cold')} | {_f(t['resolve']['p50_us'])} ({_cold(t, 'resolve_cold', p99=False)}) "
            f"| {_f(t['matcher']['p50_us'])} "
            f"| {r['networks']} | {r['fallbacks']['fallbacks']}/{r['fallbacks']['cases']} "
            f"| {_f(r['load_compile_s'], 2)} | {_f(r['graph_open_s'], 3)} "
            f"| {_f(r['rss_start_mb'])}→{_f(r['rss_loaded_mb'])}→{_f(r['rss_after_mb'])} |")
    lines += ["", "Side by side on the same cases (p50 / p99 µs; matching only, facts already resolved):", "",
              ("| rules | triples | DurableMatcher | flat_fact | durable raw assert+retract | linear scan | "
               "reference evaluator | zen-engine | mismatches vs reference |"),
              "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "error" in r:
            continue
        t = r["timings"]

        def pp(k: str, t: dict[str, Any] = t) -> str:
            return f"{_f(t[k]['p50_us'])} / {_f(t[k]['p99_us'])}" if k in t and t[k].get("n") else "-"
        mm = ", ".join(f"{k} {v}" for k, v in r["mismatches"].items())
        lines.append(f"| {r['rules']:,} | {r['triples_actual']:,} | {pp('matcher')} | {pp('flat_fact')} "
                     f"| {pp('durable_raw')} | {pp('linear_scan')} | {pp('reference')} | {pp('zen')} | {mm} |")
    longs = [r for r in results if r.get("long")]
    if longs:
        lines += ["", "Long runs (RSS sampled every 5 %):", "",
                  "| rules | triples | decisions | decisions/s | RSS at 10 % → end MB | growth MB | fallbacks |",
                  "|---:|---:|---:|---:|---|---:|---|"]
        for r in longs:
            lg = r["long"]
            s = lg["rss_samples"]
            lines.append(f"| {r['rules']:,} | {r['triples_actual']:,} | {lg['decisions']:,} | {_f(lg['per_s'])} "
                         f"| {s[min(2, len(s) - 1)][1]} → {s[-1][1]} | {lg['rss_growth_mb']:+.1f} "
                         f"| {lg['fallbacks']['fallbacks']}/{lg['fallbacks']['cases']} |")
    return "\n".join(lines) + "\n"


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """Targets met or not, for the largest configuration measured."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return []
    big = max(ok, key=lambda r: (r["rules"], r["triples"]))
    d = big["timings"]["decide"]
    out = [f"targets at {big['rules']:,} rules x {big['triples_actual']:,} triples:"]

    def line(name: str, value: float, target: float, le: bool = True) -> None:
        met = value <= target if le else value >= target
        out.append(f"  {'MET    ' if met else 'NOT MET'} {name}: {value:,.3f} ({'<=' if le else '>='} {target:,})")
    line("decide p50 µs", d["p50_us"], TARGETS["p50_us"])
    line("decide p99 µs", d["p99_us"], TARGETS["p99_us"])
    line("decisions/s", d["per_s"], TARGETS["per_s"], le=False)
    io = big["timings"].get("decide_no_io")
    if io:
        line("decide p50 µs without the audit/review writes", io["p50_us"], TARGETS["p50_us"])
        line("decide p99 µs without the audit/review writes", io["p99_us"], TARGETS["p99_us"])
        line("decisions/s without the audit/review writes", io["per_s"], TARGETS["per_s"], le=False)
    cold = big["timings"].get("decide_no_io_cold")
    if cold:
        line("decide p50 µs without the writes, graph read cache off", cold["p50_us"], TARGETS["p50_us"])
        line("decide p99 µs without the writes, graph read cache off", cold["p99_us"], TARGETS["p99_us"])
    line("load+compile s", big["load_compile_s"], TARGETS["load_compile_s"])
    line("graph open s", big["graph_open_s"], TARGETS["graph_open_s"])
    for r in ok:
        if r.get("long"):
            out.append(f"  RSS over {r['long']['decisions']:,} decisions at {r['rules']} rules: "
                       f"{r['long']['rss_growth_mb']:+.1f} MB after warm-up")
    return out


def _child(args: argparse.Namespace, n_rules: int, triples: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", f"{n_rules}:{triples}",
           "--cache", str(args.cache), "--cases", str(args.cases), "--seconds", str(args.seconds),
           "--min-calls", str(args.min_calls), "--seed", str(args.seed)]
    if args.long and (not args.long_only_largest or (n_rules, triples) == (max(args.rules), max(args.triples))):
        cmd += ["--long", str(args.long)]
    if args.profile and (n_rules, triples) == (max(args.rules), max(args.triples)):
        cmd += ["--profile", args.profile]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        return {"rules": n_rules, "triples": triples,
                "error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/rule_path.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=lambda s: [int(x) for x in s.split(",")], default=[20, 200, 2000],
                    help="rule counts, comma-separated (default 20,200,2000)")
    ap.add_argument("--triples", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000, 1_000_000],
                    help="graph sizes, comma-separated (default 10000,100000,1000000)")
    ap.add_argument("--cases", type=int, default=500, help="distinct invoice cases sampled per configuration")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per variant and configuration")
    ap.add_argument("--min-calls", type=int, default=300, help="at least this many calls per variant")
    ap.add_argument("--long", type=int, default=0, metavar="N", help="also decide N cases, sampling RSS")
    ap.add_argument("--long-only-largest", action="store_true",
                    help="run --long only at the largest configuration")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the largest configuration's decide into FILE")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (< 1 min): 20 and 200 rules over 10k triples, short budgets")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"graph cache (default {DEFAULT_CACHE})")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="write all results and the machine description as JSON")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # RULES:TRIPLES, run in this process (child mode)
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.one:
        r, t = (int(x) for x in args.one.split(":"))
        res = run_config(r, t, cache=args.cache, n_cases=args.cases, seconds=args.seconds,
                         min_calls=args.min_calls, long=args.long, seed=args.seed, profile=args.profile,
                         log=lambda m: print(m, file=sys.stderr))
        print(json.dumps(res, default=str))
        return 0
    if args.quick:
        args.rules, args.triples = [20, 200], [10_000]
        args.cases, args.seconds, args.min_calls = min(args.cases, 200), 1.0, 100
        args.long = args.long or 0
    mach = machine()
    print(f"# {mach['cpu']}, {mach['cores']} cores, {mach['ram']}, Python {mach['python']}; "
          + ", ".join(f"{k} {v}" for k, v in mach["packages"].items()), flush=True)
    results = []
    t_all = time.perf_counter()
    for t in args.triples:
        for r in args.rules:
            t0 = time.perf_counter()
            res = _child(args, r, t)
            results.append(res)
            if "error" in res:
                print(f"{r} rules x {t} triples: ERROR {res['error']}", flush=True)
            else:
                d = res["timings"]["decide"]
                print(f"{r:>5} rules x {res['triples_actual']:>9,} triples: decide p50 {d['p50_us']:8.0f} µs "
                      f"p99 {d['p99_us']:8.0f} µs {d['per_s']:8.0f}/s, {res['networks']} networks, "
                      f"load+compile {res['load_compile_s']:.2f} s, graph open {res['graph_open_s']:.3f} s "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print()
    print(markdown(results))
    print("\n".join(verdict(results)))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "argv": sys.argv, "results": results}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
