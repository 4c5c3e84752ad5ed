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

from engine.errors import Diagnostic, LoadError
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
                                                      "values": t.failed.values, "line": t.failed.line,
                                                      "witness": t.failed.witness}}
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
        self._identities: Any = None
        security = ws.config.section("security")
        self.require_keys = bool(security.get("require_keys", False))

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

    @property
    def identities(self) -> Any:
        """Issued keys and revoked identities (`engine.govern.identity.IdentityStore`), in the state DB."""
        if self._identities is None:
            from engine.govern.identity import IdentityStore
            from engine.storage import default_url

            self._identities = IdentityStore(self.state_url or default_url(self.ws.root), clock=self.now)
        return self._identities

    def authenticate(self, key: str | None, kind: str = "agent") -> str | None:
        """The identity a key proves (None without a key, when keys are not required)."""
        from engine.errors import AuthError

        if key is None or not key.strip():
            if self.require_keys:
                raise AuthError(f"this engine requires a key for every {kind} ([security] require_keys)",
                                code="auth_required")
            return None
        return self.identities.authenticate(key, kind)

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

    def decide(self, case: Case | dict[str, Any], *, llm: bool = True, review: bool = True,
               key: str | None = None) -> Decision:
        """Decide a case: `execute` with proposals, `deny`, `escalate` or `no_action`, with reasons.

        `key` is the asking agent's key (`rbk_...`): it proves the identity, which the case's
        `agent` may then only repeat. Without a key the case's `agent` (or the workspace default)
        is taken at its word, unless `[security] require_keys` is on. Unknown, revoked and
        out-of-scope agents are refused with `AuthError` before anything is decided.
        With `llm`, a case no rule decides goes to the configured model; with `review`, an
        escalation is persisted in the review queue (`decision.review_id`)."""
        caller = self.authenticate(key)
        return decide(self.ws, self._case(case), matcher_for=self.matcher_for, clock=self.clock,
                      new_id=self.new_id, fallback=self.fallback if llm else None,
                      queue=self.queue if review else None, caller=caller,
                      identities=self._identities_if_used())

    def _identities_if_used(self) -> Any:
        """The identity store when keys are in play (required, or the state DB already exists);
        a workspace that never issued a key decides without touching the database."""
        if self._identities is not None or self.require_keys:
            return self.identities
        from engine.storage import default_url

        url = self.state_url or default_url(self.ws.root)
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
            return None
        return self.identities

    def explain(self, case: Case | dict[str, Any], *, llm: bool = True, review: bool = False,
                key: str | None = None) -> Explanation:
        """Decide a case and trace every rule: why it matched or the first condition that failed."""
        decision = self.decide(case, llm=llm, review=review, key=key)
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

    def _reviewer(self, item: Any, reviewer: str | None, key: str | None) -> str:
        """The reviewer who settles `item`: declared, permitted for its ruleset, and proved by
        their key when one is given (or required)."""
        from engine.errors import AuthError, suggest_help
        from engine.govern.review import ReviewError

        proved = self.authenticate(key, "reviewer")
        if proved is not None:
            if reviewer and reviewer != proved:
                raise AuthError(f"the key belongs to reviewer `{proved}`, not `{reviewer}`",
                                code="auth_identity_mismatch")
            reviewer = proved
        if not reviewer or not reviewer.strip():
            raise ReviewError("a review names its reviewer (--reviewer)", code="review_incomplete")
        found = self.ws.agents.reviewer(reviewer)
        if found is None:
            help_, _ = suggest_help(reviewer, self.ws.agents.reviewers, "reviewers")
            raise AuthError([Diagnostic("reviewer_unknown", f"unknown reviewer `{reviewer}`", help=help_)])
        if self._identities_if_used() is not None:
            self.identities.check_not_revoked(reviewer)
        if not found.may_review(item.ruleset):
            raise AuthError([Diagnostic("reviewer_not_permitted",
                                        f"reviewer `{reviewer}` may not settle `{item.ruleset}` escalations",
                                        help=f"their rulesets: {', '.join(found.rulesets)}")])
        return reviewer

    def review_reject(self, item_id: str, *, reviewer: str | None, reason: str, key: str | None = None) -> Any:
        from engine.govern.review import ReviewError

        if not reason.strip():
            raise ReviewError("a rejection gives a reason", code="review_incomplete")
        reviewer = self._reviewer(self.queue.get(item_id), reviewer, key)
        return self.queue.reject(item_id, reviewer=reviewer, reason=reason)

    def review_approve(self, item_id: str, *, reviewer: str | None, action: str | None = None,
                       params: dict[str, Any] | None = None, expect_hash: str | None = None,
                       note: str = "", key: str | None = None) -> Any:
        """Approve a pending item: the proposal waiting in it, or one the reviewer gives.

        The approval is re-verified now, against the current graph, as a `human` proposal: any
        `deny` reason (schema, precondition, deny guard) refuses it; `review` reasons are what
        the reviewer settles. It is bound to the hash of the exact action and parameters."""
        from engine.act.catalog import proposal_hash
        from engine.govern.review import ReviewError
        from engine.govern.verify import Deny

        item = self.queue.get(item_id)
        reviewer = self._reviewer(item, reviewer, key)
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
