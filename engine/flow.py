"""The contexts the pipeline's stages run over, and the loop that runs them.

`Deciding` is what deciding reads (compiled rules, gate, agents, graph, clock, ids, model);
`Flow` is one case on its way through the DECIDE stages; `Acting` and `Run` are the same for an
execution through the ACT stages. `run_stages` runs a table of `Stage`s in order and times each.
The stages themselves, in order, are in `engine.pipeline`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from engine.case import Case
from engine.decision import Decision, Outcome, Source
from engine.govern.agents import Agent
from engine.govern.verify import Reason
from engine.kg.resolver import Reads
from engine.lang.compiler import CompiledRuleset
from engine.match.hit import HitResult
from engine.ports import Ports
from engine.proposals import Proposal

Ctx = TypeVar("Ctx")
Deps = TypeVar("Deps")


@dataclass(frozen=True)
class Stage(Generic[Ctx, Deps]):
    """One named step of the flow: a function of the context and what it needs."""

    name: str
    run: Callable[[Ctx, Deps], None]


def run_stages(stages: Sequence[Stage[Ctx, Deps]], ctx: Ctx, deps: Deps, timings: dict[str, float]) -> None:
    """Run `stages` in order on `ctx`, each one's wall time (µs) into `timings`; a stage that
    raises stops the flow (a refusal: nothing after it runs)."""
    clock = time.perf_counter
    t0 = clock()
    for stage in stages:  # one clock read per stage: each stage's end is the next one's start
        stage.run(ctx, deps)
        t1 = clock()
        timings[stage.name] = (t1 - t0) * 1e6
        t0 = t1


@dataclass
class Deciding:
    """What deciding a case reads: the compiled rulesets and gate, the agents, the graph (all
    fixed once the workspace is loaded), the model, and the injected clock and ids."""

    rulesets: Mapping[str, CompiledRuleset]  # by case type
    agents: Any  # engine.govern.agents.AgentRegistry
    gate: Any  # engine.govern.verify.Gate
    graph: Any  # engine.kg.derived.GraphContext
    schema: Any  # engine.lang.types.Schema
    prefixes: Mapping[str, str]
    actions: Any  # engine.lang.actions.ActionCatalog: where each action runs, and its inverse
    graph_revision: Callable[[], str]
    matcher_for: Callable[[CompiledRuleset], Any]
    clock: Callable[[], dt.date]
    new_id: Callable[[], str]
    fallback: Any = None  # engine.llm.fallback.Fallback; None: no model

    @classmethod
    def of(cls, ws: Any, *, matcher_for: Callable[[CompiledRuleset], Any], clock: Callable[[], dt.date],
           new_id: Callable[[], str], fallback: Any = None) -> Deciding:
        """From a loaded `engine.workspace.Workspace`."""
        store = ws.store
        return cls(ws.by_case_type, ws.agents, ws.gate, ws.graph, ws.schema, ws.prefixes, ws.actions,
                   (lambda: store.revision) if store is not None else (lambda: ""), matcher_for, clock, new_id,
                   fallback)


@dataclass
class Flow:
    """One case on its way through the decide stages: what each stage reads and adds."""

    case: Case
    caller: str | None = None  # the agent a key proved (None: no key)
    identities: Any = None  # refuses revoked identities (None: no keys in play)
    use_model: bool = True
    # authenticate
    rs: CompiledRuleset = field(default=None)  # type: ignore[assignment]
    agent: Agent = field(default=None)  # type: ignore[assignment]
    # resolve
    env: dict[str, Any] = field(default_factory=dict)
    reads: Reads = field(default_factory=Reads)
    as_of: dt.date | None = None
    # match
    matcher: str = "durable"
    matched: list[str] = field(default_factory=list)
    hit: HitResult = field(default_factory=lambda: HitResult([]))
    # consequence, fallback, verify
    proposals: list[Proposal] = field(default_factory=list)
    source: Source = Source.NONE
    outcome: Outcome = Outcome.ESCALATE
    reason: str = "no_rule_matched"
    message: str = "no rule decides this case"
    session: Any = None  # the model's session, when it was asked
    llm: dict[str, Any] | None = None
    checks: list[Reason] = field(default_factory=list)
    timings_us: dict[str, float] = field(default_factory=dict)


@dataclass
class ExecutionOutcome:
    """How a decision's actions ran: `done`, `refused` (re-verification failed: nothing ran),
    `failed_compensated`, `failed_needs_review`, `needs_review`, `in_progress` or `pending`."""

    decision_id: str
    outcome: str
    steps: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    chain: Any = None  # the executor's `ChainResult`

    @property
    def executed(self) -> bool:
        return self.outcome == "done"

    def to_json(self) -> dict[str, Any]:
        c = self.chain
        return {"decision_id": self.decision_id, "outcome": self.outcome, "steps": self.steps,
                "refused": self.refused, "chain_id": getattr(c, "chain_id", None),
                "error_code": getattr(c, "error_code", None), "error_message": getattr(c, "error_message", None)}


@dataclass
class Acting:
    """What executing reads: deciding (to verify again, the actions), the ports, the key that asks."""

    deciding: Deciding
    ports: Ports
    key: str | None = None


@dataclass
class Run:
    """One execution on its way through the act stages."""

    ident: str  # a decision id, or an approved review item `R-...`
    decided: Decision | None = None  # the decision just made in this process
    decision_id: str = ""
    agent: str = ""
    case: Case | None = None
    proposals: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    fresh: bool = False  # decided on this very graph revision a moment ago: verified already
    steps: list[Any] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    done_before: int = 0
    outcome: ExecutionOutcome | None = None
    timings_us: dict[str, float] = field(default_factory=dict)


__all__ = ["Acting", "Deciding", "ExecutionOutcome", "Flow", "Run", "Stage", "run_stages"]
