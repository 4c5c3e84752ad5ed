"""The facade: `Engine.open(workspace)`, then `decide(case)` and `explain(case)` many times,
and the review operations (`review_list`, `review_approve`, `review_reject`)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.errors import LoadError
from engine.lang.compiler import CompiledRuleset
from engine.match import make_matcher
from engine.match.reference import RuleTrace, explain_rules
from engine.model import Case
from engine.pipeline import Decision, decide
from engine.proposals import Proposal
from engine.workspace import Workspace, load_workspace


@dataclass
class Explanation:
    """A decision with a trace of every rule: why it matched, or the first condition that failed."""

    decision: Decision
    rules: list[RuleTrace]
    ruleset: CompiledRuleset

    def to_json(self) -> dict[str, Any]:
        d = self.decision.to_json(self.ruleset)
        d["explanation"] = [
            {"rule": t.id, "description": t.description, "priority": t.priority, "matched": t.matched,
             "conditions": [{"condition": c.text, "result": c.result, "values": c.values, "line": c.line}
                            for c in t.conditions],
             "failed": None if t.failed is None else {"condition": t.failed.text, "result": t.failed.result,
                                                      "values": t.failed.values, "line": t.failed.line}}
            for t in self.rules]
        return d


def make_fallback(cfg: Any, model: Any = None) -> Any:
    """The LLM fallback for a config (None when no model is configured or the mode is `off`)."""
    from engine.llm.fallback import Fallback
    from engine.llm.models import LiteLLMModel, RecordingModel, ReplayModel, ResponseFile

    if model is None:
        if not cfg.enabled:
            return None
        if cfg.mode == "replay":
            model = ReplayModel(ResponseFile(cfg.responses))
        else:
            model = LiteLLMModel(cfg.model, temperature=cfg.temperature, max_tokens=cfg.max_tokens)
            if cfg.mode == "record":
                model = RecordingModel(model, ResponseFile(cfg.responses))
    return Fallback(cfg, model)


class Engine:
    """A loaded workspace ready to decide cases. Compile once, decide many times.

    `model` overrides the configured LLM (a `ScriptedModel` in tests); `state` is the
    SQLAlchemy URL of the review queue (default: `[storage] url`, else SQLite in the
    workspace's `.rulebridge/`); the queue is opened on first use.
    """

    def __init__(self, ws: Workspace, *, matcher: str = "durable", clock: Callable[[], dt.date] | None = None,
                 new_id: Callable[[], str] | None = None, model: Any = None, llm: Any = None,
                 state: str | None = None, now: Callable[[], dt.datetime] | None = None):
        from engine.llm.config import load_llm_config

        self.ws = ws
        self.matcher_kind = matcher
        self.clock = clock or dt.date.today
        self.new_id = new_id or (lambda: uuid.uuid4().hex)
        self._matchers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.llm_config, problems = load_llm_config(ws.config.section("llm"), ws.root)
        if problems:
            raise LoadError(problems)
        if llm is not None:  # an LLMConfig given by the caller
            self.llm_config = llm
        self.fallback = make_fallback(self.llm_config, model)
        self.state_url = (state or os.environ.get("RULEBRIDGE_STATE_URL")
                          or str(ws.config.section("storage").get("url") or ""))
        self.now = now
        self._queue: Any = None

    @classmethod
    def open(cls, workspace: str | Path = ".", *, matcher: str = "durable", backend: str | None = None,
             clock: Callable[[], dt.date] | None = None, new_id: Callable[[], str] | None = None,
             model: Any = None, llm: Any = None, state: str | None = None,
             now: Callable[[], dt.datetime] | None = None) -> "Engine":
        """Load, check and compile a workspace; raises `LoadError` with every diagnostic if it has errors."""
        ws = load_workspace(workspace, backend=backend)
        if ws.errors:
            raise LoadError(ws.errors)
        return cls(ws, matcher=matcher, clock=clock, new_id=new_id, model=model, llm=llm, state=state, now=now)

    @property
    def queue(self) -> Any:
        """The review queue (opened, and its tables created, on first use)."""
        if self._queue is None:
            from engine.govern.review import ReviewQueue, default_url

            hours = float(self.ws.config.section("review").get("expire_after_hours", 72))
            self._queue = ReviewQueue(self.state_url or default_url(self.ws.root),
                                      expire_after=dt.timedelta(hours=hours), clock=self.now)
        return self._queue

    def matcher_for(self, rs: CompiledRuleset) -> Any:
        m = self._matchers.get(rs.name)
        if m is None:
            with self._lock:
                m = self._matchers.get(rs.name)
                if m is None:
                    m = self._matchers[rs.name] = make_matcher(rs, self.matcher_kind)
        return m

    def warm(self) -> None:
        """Build every ruleset's matcher now rather than on its first case."""
        for rs in self.ws.rulesets.values():
            self.matcher_for(rs)

    def _case(self, case: Case | dict[str, Any]) -> Case:
        return case if isinstance(case, Case) else Case.from_json(case)

    def decide(self, case: Case | dict[str, Any], *, llm: bool = True, review: bool = True) -> Decision:
        """Decide a case: `execute` with proposals, `deny`, `escalate` or `no_action`, with reasons.

        With `llm`, a case no rule decides goes to the configured model; with `review`, an
        escalation is persisted in the review queue (`decision.review_id`)."""
        return decide(self.ws, self._case(case), matcher_for=self.matcher_for, clock=self.clock,
                      new_id=self.new_id, fallback=self.fallback if llm else None,
                      queue=self.queue if review else None)

    def explain(self, case: Case | dict[str, Any], *, llm: bool = True, review: bool = False) -> Explanation:
        """Decide a case and trace every rule: why it matched or the first condition that failed."""
        decision = self.decide(case, llm=llm, review=review)
        rs = self.ws.rulesets[decision.ruleset]
        return Explanation(decision, explain_rules(rs, decision.env), rs)

    @property
    def rulesets(self) -> dict[str, CompiledRuleset]:
        return self.ws.rulesets

    # -- the review queue -----------------------------------------------------------------------
    def review_list(self, status: str | None = "pending") -> list[Any]:
        return self.queue.list(status)

    def review_show(self, item_id: str) -> Any:
        return self.queue.get(item_id)

    def review_reject(self, item_id: str, *, reviewer: str, reason: str) -> Any:
        from engine.govern.review import ReviewError

        if not reviewer.strip() or not reason.strip():
            raise ReviewError("a rejection names its reviewer and gives a reason", code="review_incomplete")
        return self.queue.reject(item_id, reviewer=reviewer, reason=reason)

    def review_approve(self, item_id: str, *, reviewer: str, action: str | None = None,
                       params: dict[str, Any] | None = None, expect_hash: str | None = None,
                       note: str = "") -> Any:
        """Approve a pending item: the proposal waiting in it, or one the reviewer gives.

        The approval is re-verified now, against the current graph, as a `human` proposal: any
        `deny` reason (schema, precondition, deny guard) refuses it; `review` reasons are what
        the reviewer settles. It is bound to the hash of the exact action and parameters."""
        from engine.act.catalog import proposal_hash
        from engine.govern.review import ReviewError
        from engine.govern.verify import Deny

        if not reviewer.strip():
            raise ReviewError("an approval names its reviewer (--reviewer)", code="review_incomplete")
        item = self.queue.get(item_id)
        if item.status != "pending":
            raise ReviewError(f"review item `{item_id}` is {item.status}, not pending", code="review_not_pending")
        if action is None:
            if item.proposal is None:
                raise ReviewError(f"review item `{item_id}` has no proposal; give the action and its parameters",
                                  code="review_needs_action")
            action, params = item.proposal["action"], item.proposal["params"]
        if expect_hash and item.proposal_hash and not item.proposal_hash.startswith(expect_hash):
            raise ReviewError(f"the proposal of `{item_id}` is {item.proposal_hash[:12]}, not {expect_hash}: "
                              "it is not what you reviewed", code="review_hash_mismatch")
        case = Case.from_json(item.context["case"])
        proposal = Proposal(action, dict(params or {}), "human")
        verdict = self.verify(case, proposal)
        if isinstance(verdict, Deny):
            raise ReviewError("the approval is refused by the verification gate: " + "; ".join(
                f"{r.id or r.code}: {r.message}" for r in verdict.reasons), code="review_denied")
        approved = verdict.proposal  # type: ignore[union-attr]
        return self.queue.approve(item_id, reviewer=reviewer, proposal=approved.to_json(),
                                  proposal_hash=proposal_hash(approved.action, approved.params), note=note)

    def verify(self, case: Case | dict[str, Any], proposal: Proposal) -> Any:
        """Verify a proposal (from anyone) against the facts of a case, now: the gate's verdict."""
        from engine.govern.verify import verify
        from engine.pipeline import prepare

        rs, agent, env, reads, _as_of = prepare(self.ws, self._case(case), self.clock)
        return verify(proposal, gate=self.ws.gate, rs=rs, env=env, agent=agent, reads=reads)
