"""The demo stream: sample cases drawn from the workspace graph, deterministic for a seed."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

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
    """`n` cases spread over the workspace's rulesets, payloads drawn from the graph."""
    rng = random.Random(seed)
    cache: dict[str, list[str]] = {}
    rulesets = sorted(ws.rulesets.values(), key=lambda r: r.name)
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
            return aid
    return None


def load_cases(path: Path) -> Iterator[dict[str, Any]]:
    """Cases from a JSON Lines file, one case object per line."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
