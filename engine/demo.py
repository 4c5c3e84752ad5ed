"""The demo: a stream of sample cases drawn from the workspace graph (deterministic for a seed),
decided, executed and audited by `run_demo`, which returns the summary the CLI prints."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.kg.store import RDF_TYPE
from engine.lang.types import Type
from engine.workspace import Workspace


def _instances(ws: Workspace, cls: str, cache: dict[str, list[str]]) -> list[str]:
    if cls not in cache:
        iri = ws.schema.classes.get(cls)
        subclasses = {c for c in ws.schema.classes if ws.schema.is_subclass(c, cls)}
        iris = {ws.schema.classes[c] for c in subclasses} | ({iri} if iri else set())
        assert ws.store is not None
        cache[cls] = sorted(s for s, o in ws.store.pairs(RDF_TYPE) if str(o) in iris)
    return cache[cls]


def _sample(ws: Workspace, t: Type, name: str, rng: random.Random, cache: dict[str, list[str]]) -> Any:
    if t.kind == "ref":
        pool = _instances(ws, t.cls or "", cache)
        return rng.choice(pool) if pool else None
    if t.kind == "number":
        if "percent" in name:
            return rng.choice([2, 5, 8, 10, 12, 15, 18, 20, 25, 30, 40])
        return round(rng.uniform(0, 5000), 2)
    if t.kind == "boolean":
        return rng.random() < 0.5
    if t.kind == "date":
        return f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}"
    if t.kind == "string":
        return rng.choice(["web", "email", "phone", "partner"])
    if t.kind == "list":
        return [_sample(ws, t.elem or Type("any"), name, rng, cache) for _ in range(rng.randint(1, 3))]
    if t.kind == "object":
        return {k: _sample(ws, ft, k, rng, cache) for k, ft in t.fields if not (ft.optional and rng.random() < 0.5)}
    return None


def sample_cases(ws: Workspace, n: int = 240, *, seed: int = 7) -> list[dict[str, Any]]:
    """`n` cases spread over the workspace's rulesets, payloads drawn from the graph. A case type
    that correlations emit is left out: its cases come from events (`rulebridge observe`), and
    the demo's recorded model answers stay those of the case types clients send."""
    rng = random.Random(seed)
    cache: dict[str, list[str]] = {}
    emitted = {c.case_type for s in ws.streams for c in s.correlations}
    rulesets = sorted((r for r in ws.rulesets.values() if r.case_type not in emitted), key=lambda r: r.name)
    out = []
    for i in range(n):
        rs = rulesets[i % len(rulesets)]
        case = {"type": rs.case_type, "id": f"demo-{i + 1:04d}",
                "payload": _sample(ws, rs.case_schema, "case", rng, cache), "as_of": "2026-11-01"}
        agent = demo_agent(ws, rs.name)
        if agent:
            case["agent"] = agent
        out.append(case)
    return out


def demo_agent(ws: Workspace, ruleset: str) -> str | None:
    """The agent a demo case comes from: the first declared agent, other than the default, that may ask."""
    reg = ws.agents
    if reg is None or reg.implicit:
        return None
    for aid in sorted(reg.agents):
        if aid != reg.default and reg.agents[aid].may_ask(ruleset):
            return str(aid)
    return None


def load_cases(path: Path) -> Iterator[dict[str, Any]]:
    """Cases from a JSON Lines file, one case object per line."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


COLUMNS = ("cases", "rule", "llm", "review", "deny", "no_action", "invalid", "reached_llm")


@dataclass
class DemoSummary:
    """What a demo run came to: decisions per ruleset and source, the model's part, the time per
    case, the executions and the audit chain's verdict (the CLI prints it; `to_json` for tools)."""

    rows: dict[str, dict[str, int]]
    llm_calls: int
    schema_repairs: int
    guard_repairs: int
    times_us: list[float]
    accepted: int
    executed: dict[str, int]
    refused_because: dict[str, int]
    execute_s: float
    revision_decided: str
    revision_after: str
    review_pending: int
    audit: Any  # engine.audit.chain.VerifyReport

    @property
    def total(self) -> dict[str, int]:
        return {k: sum(r[k] for r in self.rows.values()) for k in COLUMNS}

    @property
    def share_reaching_llm(self) -> float:
        t = self.total
        return t["reached_llm"] / t["cases"] if t["cases"] else 0.0

    def percentile_us(self, q: float) -> float:
        us = sorted(self.times_us)
        if not us:
            return 0.0
        return statistics.median(us) if q == 0.5 else us[min(len(us) - 1, int(len(us) * q))]

    def to_json(self) -> dict[str, Any]:
        a = self.audit
        return {"rulesets": self.rows, "total": self.total, "llm_calls": self.llm_calls,
                "schema_repairs": self.schema_repairs, "guard_repairs": self.guard_repairs,
                "share_reaching_llm": round(self.share_reaching_llm, 4), "p50_us": round(self.percentile_us(0.5), 1),
                "p99_us": round(self.percentile_us(0.99), 1), "review_pending": self.review_pending,
                "executed": self.executed, "execute_s": round(self.execute_s, 3),
                "refused_because": self.refused_because,
                "audit": {"valid": a.ok, "events": a.checked, "first_broken_seq": a.first_broken_seq,
                          "reason": a.reason, "graph_revision_after": self.revision_after}}


def run_demo(engine: Any, stream: list[dict[str, Any]], *, advance: Callable[[], None] | None = None) -> DemoSummary:
    """Decide every case of `stream` (an invalid one is counted, not fatal), then execute every
    accepted decision — each re-verified against the graph as the earlier actions left it — then
    verify the audit chain. `advance` is called after each case (a progress bar)."""
    from engine.act.execute import ExecutionError
    from engine.errors import CaseError

    rows: dict[str, dict[str, int]] = {}
    times: list[float] = []
    accepted: list[str] = []
    llm_calls = schema_repairs = guard_repairs = 0
    for case in stream:
        t0 = time.perf_counter()
        d = None
        try:
            d = engine.decide(case)
            key = d.ruleset
            col = {"execute": d.source.value, "escalate": "review", "deny": "deny", "no_action": "no_action"}[
                d.outcome.value]
            if d.outcome == "execute":
                accepted.append(d.id)
            if d.llm is not None:
                llm_calls += d.llm.get("calls", 0)
                schema_repairs += d.llm.get("schema_repairs", 0)
                guard_repairs += d.llm.get("guard_repairs", 0)
        except CaseError:
            key, col = str(case.get("type", "?")), "invalid"
        times.append((time.perf_counter() - t0) * 1e6)
        row = rows.setdefault(key, dict.fromkeys(COLUMNS, 0))
        row["cases"] += 1
        row[col] += 1
        row["reached_llm"] += bool(d is not None and d.llm is not None and d.llm.get("calls"))
        if advance is not None:
            advance()
    executed: dict[str, int] = {}
    why_refused: dict[str, int] = {}  # the re-verification's reasons: what an earlier action changed
    revision_decided = engine.ws.store.revision
    t_exec = time.perf_counter()
    for decision_id in accepted:
        try:
            result = engine.execute(decision_id)
            outcome = result.outcome
            for r in result.refused:
                why = f"{r.get('action')}: {r.get('message') or r.get('code')}"
                why_refused[why] = why_refused.get(why, 0) + 1
        except ExecutionError as exc:  # e.g. an action bound to no connector in this workspace
            outcome = exc.code
        executed[outcome] = executed.get(outcome, 0) + 1
    exec_s = time.perf_counter() - t_exec
    return DemoSummary(rows, llm_calls, schema_repairs, guard_repairs, times, len(accepted), executed, why_refused,
                       exec_s, revision_decided, engine.ws.store.revision, len(engine.review_list("pending")),
                       engine.audit.verify())
