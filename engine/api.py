"""The facade: `Engine.open(workspace)`, then `decide(case)` and `explain(case)` many times,
and the review operations (`review_list`, `review_approve`, `review_reject`)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.case import MAX_CASE_BYTES, MAX_CASE_BYTES_LIMIT, Case
from engine.errors import Diagnostic, LoadError
from engine.lang.compiler import CompiledRuleset
from engine.match import make_matcher
from engine.match.reference import RuleTrace, explain_rules
from engine.pipeline import Deciding, Decision, act, approve, govern, reject, verify_against
from engine.proposals import Proposal
from engine.storage import state_url
from engine.workspace import Workspace, load_workspace

MAX_REFUSED_CASE = 64 * 1024  # characters of a refused case kept in full (larger: its hash)


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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
    from engine.llm.clients import LiteLLMModel, RecordingModel, ReplayModel, ResponseFile
    from engine.llm.fallback import Fallback

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


def _max_case_bytes(security: dict[str, Any]) -> int:
    """`[security] max_case_bytes`, checked: a whole number from 1 to `MAX_CASE_BYTES_LIMIT`."""
    value = security.get("max_case_bytes", MAX_CASE_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CASE_BYTES_LIMIT:
        raise LoadError([Diagnostic("config", f"[security] max_case_bytes = {value!r}: expected a whole number "
                                    f"from 1 to {MAX_CASE_BYTES_LIMIT}",
                                    help="every case is recorded in the audit log, whose events hold at most "
                                         "4 MiB; the default is 262144")])
    return value


def _matcher_kind(value: Any) -> str:
    """`[rules] matcher` (or `RULEBRIDGE_MATCHER`), checked: one of `engine.match.MATCHERS`."""
    from engine.match import MATCHERS

    kind = str(value or "index")
    if kind not in MATCHERS:
        raise LoadError([Diagnostic("config", f"[rules] matcher = {kind!r}: expected one of {', '.join(MATCHERS)}",
                                    help="durable (durable-rules' Rete), index (the compiled discrimination "
                                         "index) or reference (the plain-Python evaluator, for tests); "
                                         "RULEBRIDGE_MATCHER overrides the file")])
    return kind


class Engine:
    """A loaded workspace ready to decide cases. Compile once, decide many times.

    `model` overrides the configured LLM (a `ScriptedModel` in tests); `state` is the
    SQLAlchemy URL of the review queue (default: `[storage] url`, else SQLite in the
    workspace's `.rulebridge/`); the queue is opened on first use.
    """

    def __init__(self, ws: Workspace, *, matcher: str | None = None, clock: Callable[[], dt.date] | None = None,
                 new_id: Callable[[], str] | None = None, model: Any = None, llm: Any = None,
                 state: str | None = None, now: Callable[[], dt.datetime] | None = None):
        from engine.llm.config import load_llm_config

        self.ws = ws
        self.matcher_kind = matcher or _matcher_kind(ws.config.section("rules").get("matcher"))
        self.clock = clock or dt.date.today
        self.new_id = new_id or (lambda: uuid.uuid4().hex)
        self._matchers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.llm_config, problems = load_llm_config(ws.config.section("llm"), ws.root, ws.config.llm_environment())
        if problems:
            raise LoadError(problems)
        if llm is not None:  # an LLMConfig given by the caller
            self.llm_config = llm
        self.fallback = make_fallback(self.llm_config, model)
        self.state_url = state_url(ws.root, ws.config, state)  # review queue, keys, decisions, ledger, audit
        self.now = now
        self._queue: Any = None
        self._identities: Any = None
        self._audit: Any = None
        self._decisions: Any = None
        self._executor: Any = None
        self._one_db: bool | None = None
        self._database: Any = None
        self._deciding: Deciding | None = None
        self._correlator: Any = None
        self.recovery: Any = None  # what opening the executor reconciled (`engine.act.execute.RecoveryReport`)
        security = ws.config.section("security")
        self.require_keys = bool(security.get("require_keys", False))
        self.max_case_bytes = _max_case_bytes(security)  # a larger case is refused (`case_too_large`)

    @classmethod
    def open(cls, workspace: str | Path = ".", *, matcher: str | None = None, backend: str | None = None,
             clock: Callable[[], dt.date] | None = None, new_id: Callable[[], str] | None = None,
             model: Any = None, llm: Any = None, state: str | None = None,
             now: Callable[[], dt.datetime] | None = None) -> Engine:
        """Load, check and compile a workspace; raises `LoadError` with every diagnostic if it has errors."""
        ws = load_workspace(workspace, backend=backend)
        if ws.errors:
            raise LoadError(ws.errors)
        return cls(ws, matcher=matcher, clock=clock, new_id=new_id, model=model, llm=llm, state=state, now=now)

    @property
    def queue(self) -> Any:
        """The review queue (opened, and its tables created, on first use)."""
        if self._queue is None:
            from engine.govern.review import ReviewQueue

            hours = float(self.ws.config.section("review").get("expire_after_hours", 72))
            self._queue = ReviewQueue(self.database, expire_after=dt.timedelta(hours=hours), clock=self.now,
                                      on_expired=self._audit_expired)
        return self._queue

    @property
    def audit(self) -> Any:
        """The hash-chained audit log (`engine.audit.AuditLog`): `RULEBRIDGE_AUDIT_URL`, else
        `[audit] url`, else the state database; masking rules from `[audit] mask`."""
        if self._audit is None:
            from engine.audit.settings import default_audit_url, open_audit_log

            url = default_audit_url(self.ws.root, self.ws.config, state=self.state_url)
            self._audit = open_audit_log(self.ws.root, url=url, now=self.now,
                                         database=self.database if self.one_database else None)
        return self._audit

    @property
    def decisions(self) -> Any:
        """Decisions that act, kept for `execute` (`engine.act.decision_store.DecisionStore`)."""
        if self._decisions is None:
            from engine.act.decision_store import DecisionStore

            self._decisions = DecisionStore(self.database, clock=self.now)
        return self._decisions

    @property
    def executor(self) -> Any:
        """The executor: the ledger in the state database and the workspace's connectors.

        Opening it reconciles what a dead process left (`Executor.recover`): executions started
        more than `[execution] recover_after_s` ago (default 60) are settled with their connector;
        a decision whose chain waits is run again, after re-verification, by `execute`."""
        if self._executor is None:
            from engine.act.connectors.registry import build_connectors
            from engine.act.execute import Executor
            from engine.act.ledger import Ledger

            connectors = build_connectors(self.ws.config, self.ws.store, self.ws.actions, root=self.ws.root,
                                          prefixes=self.ws.prefixes)
            ledger = Ledger(self.database)
            # one database: the ledger's writes and their audit events commit together
            units = self.database if self.one_database else None
            ex = Executor(ledger, connectors, audit=self._audit_execution, units=units,
                          **({"now": self.now} if self.now else {}))
            after = float(self.ws.config.section("execution").get("recover_after_s", 60))
            self.recovery = ex.recover(min_age=dt.timedelta(seconds=after))
            self._executor = ex
        return self._executor

    @property
    def database(self) -> Any:
        """The state database (`engine.storage.Database`): one connection pool and one set-up
        for every store of this engine — and the audit log's too when it lives there
        (`one_database`), whose units of work then hold a decision's rows and events together."""
        if self._database is None:
            from engine.storage import Database

            sync = str(self.ws.config.section("audit").get("synchronous") or "NORMAL") if self.one_database \
                else "NORMAL"
            self._database = Database(self.state_url, synchronous=sync)
        return self._database

    def close(self) -> None:
        """Release the state database's connections (and the audit log's, when it has its own)."""
        if self._audit is not None:
            self._audit.close()
        if self._database is not None:
            self._database.close()

    @property
    def one_database(self) -> bool:
        """Whether the audit log lives in the state database (the default: one SQLite file). Then
        what belongs together is written in one transaction (`engine.unit_of_work.Unit`): a
        decision's events with its record (and its review item), an execution's claim with its
        event, its outcome with theirs. Otherwise (`RULEBRIDGE_AUDIT_URL` / `[audit] url`
        elsewhere) each store commits on its own, the audit log first."""
        if self._one_db is None:
            from engine.audit.settings import default_audit_url

            url = self._audit.url if self._audit is not None else default_audit_url(
                self.ws.root, self.ws.config, state=self.state_url)
            from engine.storage import is_memory

            # An in-memory SQLite URL is a new database for every pool that opens it: not one.
            self._one_db = url == self.state_url and not is_memory(url)
        return self._one_db

    def units(self, *, review: bool, execute: bool) -> Any:
        """The state database, whose units of work a decision's writes join. Every store it
        writes is opened (its tables created) here, before a unit takes the write lock."""
        _ = self.audit, self.decisions
        if review:
            _ = self.queue
        if execute:
            _ = self.executor
            self.identities_if_used()
        return self.database

    def _audit_execution(self, decision_id: str, event: str, data: dict[str, Any]) -> None:
        self.audit.append(decision_id, event, str(data.get("agent") or "anonymous"), data)

    @property
    def identities(self) -> Any:
        """Issued keys and revoked identities (`engine.govern.identity.IdentityStore`), in the state DB."""
        if self._identities is None:
            from engine.govern.identity import IdentityStore

            self._identities = IdentityStore(self.database, clock=self.now)
        return self._identities

    def authenticate(self, key: str | None, kind: str = "agent") -> str | None:
        """The identity a key proves (None without a key, when keys are not required)."""
        from engine.errors import AuthError

        if key is None or not key.strip():
            if self.require_keys:
                raise AuthError(f"this engine requires a key for every {kind} ([security] require_keys)",
                                code="auth_required")
            return None
        proved: str | None = self.identities.authenticate(key, kind)
        return proved

    @property
    def deciding(self) -> Deciding:
        """What the pipeline's decide stages read: this workspace's rules, graph and gate, this
        engine's matchers, clock, ids and model (rebuilt when one of those is replaced)."""
        d = self._deciding
        if d is None or d.fallback is not self.fallback or d.clock is not self.clock or d.new_id is not self.new_id:
            d = self._deciding = Deciding.of(self.ws, matcher_for=self.matcher_for, clock=self.clock,
                                             new_id=self.new_id, fallback=self.fallback)
        return d

    def matcher_for(self, rs: CompiledRuleset) -> Any:
        m = self._matchers.get(rs.name)
        if m is None:
            with self._lock:
                m = self._matchers.get(rs.name)
                if m is None:
                    m = self._matchers[rs.name] = make_matcher(rs, self.matcher_kind)
        return m

    def warm(self, *, freeze: bool = False) -> None:
        """Get ready to serve: build every ruleset's matcher now rather than on its first case, and
        (`freeze`) move everything loaded so far out of the garbage collector's way.

        A loaded workspace is hundreds of thousands of long-lived objects (compiled rules, the
        matchers' networks, graph caches); every full collection would walk them all again, in the
        middle of some decision. `gc.freeze()` puts them in the permanent generation: decisions
        measured ~10% faster at p50 and mean on the demo workspace's audited decisions. A
        serving process (`rulebridge serve`, the demo) passes `freeze=True` once, after opening
        the engines it serves with. Not the default: objects frozen are never collected as cyclic
        garbage, so an engine dropped afterwards keeps its memory — and its on-disk graph store
        open (locked) — until the process ends."""
        import gc

        for rs in self.ws.rulesets.values():
            self.matcher_for(rs)
        if freeze:
            gc.collect()
            gc.freeze()

    def _case(self, case: Case | dict[str, Any]) -> Case:
        return case if isinstance(case, Case) else Case.from_json(case)

    def decide(self, case: Case | dict[str, Any], *, llm: bool = True, review: bool = True,
               key: str | None = None, execute: bool = False) -> Decision:
        """Decide a case: `execute` with proposals, `deny`, `escalate` or `no_action`, with reasons.

        `key` is the asking agent's key (`rbk_...`): it proves the identity, which the case's
        `agent` may then only repeat. Without a key the case's `agent` (or the workspace default)
        is taken at its word, unless `[security] require_keys` is on. Unknown, revoked and
        out-of-scope agents are refused with `AuthError` before anything is decided — and the
        refusal is audited. With `llm`, a case no rule decides goes to the configured model; with
        `review`, an escalation is persisted in the review queue (`decision.review_id`).
        Every decision is appended to the audit log; an `execute` decision is kept for
        `execute(decision.id)`, and with `execute=True` it runs at once (`decision.execution`)."""
        return govern(self.deciding, self, self._case(case), key=key, llm=llm, review=review, execute=execute,
                      max_case_bytes=self.max_case_bytes)

    @property
    def correlator(self) -> Any:
        """The correlations of the workspace's stream files and their state
        (`engine.match.correlate.Correlator`), built on first use; one per engine."""
        if self._correlator is None:
            with self._lock:
                if self._correlator is None:
                    from engine.match.correlate import Correlator

                    self._correlator = Correlator(self.ws.streams, self.ws.prefixes)
        return self._correlator

    def observe(self, event: Any, *, key: str | None = None, llm: bool = True,
                review: bool = True) -> list[Decision]:
        """Feed one event (`{type, at, id?, payload}`, or a parsed `Event`) to the correlations;
        returns the decisions of the cases it completes, in correlation order.

        Each emitted case is decided like any case (`decide`: rules, gate, audit); its `received`
        audit event says which correlation emitted it and which events caused it (`observed`).
        Events must come in the order of their `at`: an earlier one is refused
        (`CaseError`, `event_out_of_order`), as is one that fits no declared event type
        (`event_type_unknown`, `event_invalid`)."""
        from engine.match.correlate import Event

        correlator = self.correlator
        ev = event if isinstance(event, Event) else correlator.parse(event)
        decisions = []
        for emitted in correlator.observe(ev):
            case = Case.from_json(emitted.case)
            case.cause = emitted.cause()
            decisions.append(self.decide(case, key=key, llm=llm, review=review))
        return decisions

    def audit_refusal(self, decision_id: str, who: str, exc: Exception, **context: Any) -> None:
        """A `refused` event: who was refused, the error's code and message, and what they asked.

        INVARIANT: a refusal is always recorded. A name no identity may have is recorded as shown
        (escaped, cut to 80 characters) with its length and hash under `claimed`; a case too large
        for one event, by its size and hash."""
        from engine.audit.canonical import jsonable
        from engine.canonical import canonical_json
        from engine.errors import shown
        from engine.govern.agents import name_problem

        if name_problem(who) is not None:
            context["claimed"] = {"length": len(who), "sha256": _sha256(who)}
            who = shown(who) or "unknown"
        case = context.get("case")
        if isinstance(case, dict):
            case = jsonable(case)
            if isinstance(case.get("agent"), str) and name_problem(case["agent"]) is not None:
                case["agent"] = shown(case["agent"])
            text = canonical_json(case)
            if len(text) > MAX_REFUSED_CASE:
                case = {"type": shown(str(case.get("type"))), "bytes": len(text.encode("utf-8")),
                        "sha256": _sha256(text)}
            context["case"] = case
        self.audit.append(decision_id, "refused", who, jsonable({
            **context, "code": getattr(exc, "code", "auth_error"), "message": str(exc)}))

    def identities_if_used(self) -> Any:
        """The identity store when keys are in play (required, or the state DB already exists);
        a workspace that never issued a key decides without touching the database."""
        if self._identities is not None or self.require_keys:
            return self.identities
        url = self.state_url
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
        """The review items with `status` (None: all)."""
        items: list[Any] = self.queue.list(status)
        return items

    def review_show(self, item_id: str) -> Any:
        return self.queue.get(item_id)

    def review_reject(self, item_id: str, *, reviewer: str | None, reason: str, key: str | None = None) -> Any:
        """Reject a pending item, with a reason (`engine.pipeline.reject`)."""
        return reject(self.deciding, self, item_id, reviewer=reviewer, reason=reason, key=key)

    def review_approve(self, item_id: str, *, reviewer: str | None, action: str | None = None,
                       params: dict[str, Any] | None = None, expect_hash: str | None = None,
                       note: str = "", key: str | None = None) -> Any:
        """Approve a pending item: the proposal waiting in it, or one the reviewer gives
        (`engine.pipeline.approve`: verified again now, bound to the hash of the exact proposal).
        `expect_hash` (at least 12 hex characters) must start the hash of the proposal waiting."""
        return approve(self.deciding, self, item_id, reviewer=reviewer, action=action, params=params,
                       expect_hash=expect_hash, note=note, key=key)

    def _audit_expired(self, items: list[Any]) -> None:
        """Items nobody decided in time: each expires as denied, on the record of its decision."""
        from engine.audit.trail import review_events

        self.audit.append_many([ev for item in items for ev in review_events(item)])

    # -- execution --------------------------------------------------------------------------------
    def execute(self, ident: str, *, key: str | None = None, decided: Decision | None = None) -> Any:
        """Run the accepted actions of a decision (its id) or of an approved review item (`R-...`),
        each exactly once, through their connectors; returns an `ExecutionOutcome`.

        The whole chain is verified again first, against the graph as it is now (time has passed:
        a guard, a limit or a precondition may say otherwise) — steps the ledger already has as
        done excepted. Any step that does not pass refuses the whole chain before anything runs.
        Running it again returns the recorded outcome; nothing runs twice.

        `decided` is the decision just made in this process (`decide(..., execute=True)`): when the
        graph has not changed since (same revision), its proposals were verified against exactly
        these facts a moment ago and are not verified a second time."""
        return act(self.deciding, self, ident, key=key, decided=decided)

    def verify(self, case: Case | dict[str, Any], proposal: Proposal) -> Any:
        """Verify a proposal (from anyone) against the facts of a case, now: the gate's verdict."""
        return verify_against(self.deciding, self._case(case), proposal)
