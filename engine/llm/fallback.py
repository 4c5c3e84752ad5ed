"""The fallback: call the model within budget and deadline, parse and validate its answer,
send invalid answers back with the errors a bounded number of times, then give up cleanly.

Transient errors are retried with back-off (tenacity); repeated failures open a circuit
breaker (pybreaker). Whatever happens, the result is a `Proposal` to verify, an explicit
escalation from the model, or an escalation with a stable reason code — never an exception
and never an unchecked action.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pybreaker
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from engine.lang.action_models import ParamContext, format_errors, refuse_negative_zero, refuse_nul
from engine.lang.actions import ActionCatalog
from engine.proposals import Proposal

from .clients import Messages, Model, ModelError, ReplayModel, Reply, prompt_hash
from .config import LLMConfig
from .prompt import repair_message

_NoNul = AfterValidator(refuse_nul)
_Name = Annotated[str, Field(max_length=200), _NoNul]
_Fact = Annotated[str, Field(max_length=300), _NoNul]
_Text = Annotated[str, Field(max_length=4000), _NoNul]
_Confidence = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False),
                        AfterValidator(refuse_negative_zero)]


# Strict: no `"0.9"` for a number, no `true` for 1 — what the model wrote is what is checked.
class _Propose(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    decision: Literal["propose"]
    action: _Name
    params: dict[str, Any]  # checked against the action's model (`ActionCatalog.validate`), as strictly
    rationale: _Text
    confidence: _Confidence
    facts_relied_on: list[_Fact] = Field(default_factory=list, max_length=100)


class _Escalate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    decision: Literal["escalate"]
    reason: _Text


_ANSWER = TypeAdapter(Annotated[_Propose | _Escalate, Field(discriminator="decision")])
# The answers of one case together, as their `llm` audit event stores them: half of what an event
# holds (`engine.audit.log.MAX_DATA_BYTES`), whatever `max_repairs` and `max_answer_bytes` allow.
SESSION_ANSWER_BYTES = 2 * 1024 * 1024
KEPT_OF_A_LARGE_ANSWER = 500  # characters of a refused answer kept in the audit trail
MAX_ERRORS = 20  # validation errors kept per answer (audited, and sent back to the model)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


@dataclass
class Attempt:
    """One model call: what was asked (by hash), what came back, what was wrong with it."""

    kind: str  # initial | schema_repair | guard_repair
    prompt_hash: str
    raw: str | None = None
    errors: list[str] = field(default_factory=list)
    error: str | None = None  # a ModelError kind, when no answer came back
    latency_ms: float = 0.0
    cost: float = 0.0
    replayed: bool = False
    calls: int = 0  # model calls made for this attempt: retries of transient errors count, refusals
    # by the budget or an open circuit breaker do not (they never reach the model)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LLMOutcome:
    """The end of a fallback round: a proposal, the model's own escalation, or a failure code."""

    proposal: Proposal | None = None
    escalation: str | None = None  # the model said a person must decide
    # timeout | rate_limit | provider_error | circuit_open | budget_exhausted | replay_miss | schema_invalid
    # | answer_too_large | ...
    failure: str | None = None
    message: str = ""


def parse_answer(text: str, *, catalog: ActionCatalog, permitted: list[str], ctx: ParamContext
                 ) -> tuple[Proposal | str | None, list[str]]:
    """(proposal | escalation reason, errors). Errors are phrased for the model to fix them."""
    m = _FENCE.match(text)
    body = m.group(1) if m else text.strip()
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        return None, [(f"the answer is not valid JSON ({exc.__class__.__name__}: {str(exc)[:120]}); "
                       "answer with one JSON object only")]
    try:
        answer = _ANSWER.validate_python(data)
    except ValidationError as exc:
        return None, format_errors(exc)
    if isinstance(answer, _Escalate):
        return answer.reason, []
    if answer.action not in permitted:
        return None, [f"action: `{answer.action}` is not a permitted action; permitted: {', '.join(permitted)}"]
    try:
        params = catalog.validate(answer.action, answer.params, ctx)
    except ValidationError as exc:
        return None, [f"params.{e}" for e in format_errors(exc)]
    return Proposal(answer.action, params, "llm", None, answer.rationale, answer.confidence,
                    list(answer.facts_relied_on)), []


class Budget:
    """Calls per minute (sliding window) and cost per day; checked before every call."""

    def __init__(self, calls_per_minute: int, cost_per_day: float, clock: Callable[[], float] = time.time):
        self.calls_per_minute = calls_per_minute
        self.cost_per_day = cost_per_day
        self.clock = clock
        self._calls: collections.deque[float] = collections.deque()
        self._spent: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self.clock()
            while self._calls and now - self._calls[0] >= 60:
                self._calls.popleft()
            if len(self._calls) >= self.calls_per_minute:
                raise ModelError("budget_exhausted", f"{self.calls_per_minute} model calls per minute reached")
            day = dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()
            if self._spent.get(day, 0.0) >= self.cost_per_day:
                raise ModelError("budget_exhausted", f"the daily model budget of {self.cost_per_day} USD is spent")
            self._calls.append(now)

    def spend(self, cost: float) -> None:
        with self._lock:
            day = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date().isoformat()
            self._spent[day] = self._spent.get(day, 0.0) + cost


class Fallback:
    """One per engine: the model, its budget, breaker and deadline. Thread-safe."""

    def __init__(self, config: LLMConfig, model: Model, *, budget_clock: Callable[[], float] = time.time):
        self.config = config
        self.model = model
        self.budget = Budget(config.calls_per_minute, config.cost_per_day, budget_clock)
        self.breaker = pybreaker.CircuitBreaker(fail_max=config.breaker_failures,
                                                reset_timeout=config.breaker_reset_s,
                                                exclude=[lambda e: isinstance(e, ModelError) and
                                                         e.kind in ("replay_miss", "live_forbidden",
                                                                    "budget_exhausted")])  # not the model's fault
        # Each call runs on a thread of its own, so a call that hangs past its deadline holds one
        # slot, not a worker that later calls queue behind (their deadline would run out waiting).
        self._slots = threading.BoundedSemaphore(max(1, config.max_in_flight))
        self.calls = 0

    @property
    def replaying(self) -> bool:
        return isinstance(self.model, ReplayModel)

    def _call_once(self, messages: Messages, attempt: Attempt | None) -> Reply:
        self.budget.take()
        self.calls += 1
        if attempt is not None:
            attempt.calls += 1
        deadline = time.monotonic() + self.config.timeout_s
        if not self._slots.acquire(timeout=self.config.timeout_s):
            raise ModelError("timeout", f"{self.config.max_in_flight} model calls still running (some past their "
                             f"deadline); none finished within {self.config.timeout_s} s", transient=True)
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["reply"] = self.model.complete(messages, timeout=self.config.timeout_s)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc
            finally:
                self._slots.release()
                done.set()

        threading.Thread(target=run, name="rulebridge-llm", daemon=True).start()
        # the engine's own deadline, whatever the provider does
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise ModelError("timeout", f"no answer within {self.config.timeout_s} s", transient=True)
        exc = box.get("error")
        if exc is None:
            reply: Reply = box["reply"]
            return reply
        if isinstance(exc, ModelError):
            raise exc
        # a model double or provider raising something unexpected
        raise ModelError("provider_error", f"{type(exc).__name__}: {exc}") from exc

    def call(self, messages: Messages, attempt: Attempt | None = None) -> Reply:
        """One answer, with retries of transient errors and the circuit breaker around each try;
        every real model call is counted on `attempt`."""
        def try_once() -> Reply:
            try:
                return self.breaker.call(self._call_once, messages, attempt)
            except pybreaker.CircuitBreakerError as exc:
                raise ModelError("circuit_open", "the model's circuit breaker is open after repeated failures") from exc

        retrying = Retrying(stop=stop_after_attempt(self.config.retries + 1), reraise=True,
                            wait=wait_exponential(multiplier=self.config.backoff_s, max=8),
                            retry=retry_if_exception(lambda e: isinstance(e, ModelError) and e.transient))
        reply = retrying(try_once)
        self.budget.spend(reply.cost)
        return reply

    def session(self, messages: Messages, *, catalog: ActionCatalog, permitted: list[str], ctx: ParamContext
                ) -> Session:
        return Session(self, list(messages), catalog, permitted, ctx)


class Session:
    """The conversation about one case: the first answer, schema repairs, guard repairs."""

    def __init__(self, fb: Fallback, messages: Messages, catalog: ActionCatalog, permitted: list[str],
                 ctx: ParamContext):
        self.fb = fb
        self.messages = messages
        self.catalog = catalog
        self.permitted = permitted
        self.ctx = ctx
        self.attempts: list[Attempt] = []
        self.guard_repairs = 0
        self.answer_bytes = 0  # of every answer so far, as the `llm` audit event stores them

    @property
    def schema_repairs(self) -> int:
        return sum(a.kind == "schema_repair" for a in self.attempts)

    def ask(self, kind: str = "initial") -> LLMOutcome:
        """Ask (or ask again), re-asking with the validation errors up to `max_repairs` times."""
        for round_ in range(self.fb.config.max_repairs + 1):
            att = Attempt(kind if round_ == 0 else "schema_repair", prompt_hash(self.messages))
            self.attempts.append(att)
            t0 = time.perf_counter()
            try:
                reply = self.fb.call(self.messages, att)
            except ModelError as exc:
                att.error, att.latency_ms = exc.kind, (time.perf_counter() - t0) * 1e3
                return LLMOutcome(failure=exc.kind, message=str(exc))
            att.latency_ms, att.raw, att.cost, att.replayed = (time.perf_counter() - t0) * 1e3, reply.text, \
                reply.cost, reply.replayed
            too_large = self._too_large(att)
            if too_large is not None:
                return too_large
            result, errors = parse_answer(reply.text, catalog=self.catalog, permitted=self.permitted, ctx=self.ctx)
            if not errors:
                if isinstance(result, Proposal):
                    return LLMOutcome(proposal=result)
                return LLMOutcome(escalation=str(result), message=str(result))
            if len(errors) > MAX_ERRORS:  # one per offending key: as many as the answer had keys
                errors = errors[:MAX_ERRORS] + [f"... and {len(errors) - MAX_ERRORS} more"]
            att.errors = errors
            self.messages = self.messages + [{"role": "assistant", "content": reply.text[:4000]},
                                             repair_message(errors, "schema")]
        return LLMOutcome(failure="schema_invalid",
                          message=f"no valid answer after {self.fb.config.max_repairs} repair round(s): "
                                  + "; ".join(self.attempts[-1].errors)[:500])

    def _too_large(self, att: Attempt) -> LLMOutcome | None:
        """An answer too large to audit: escalate (`answer_too_large`), keeping only its start.

        INVARIANT: the raw text of every answer lands in the `llm` audit event, so an answer is
        bounded before it is parsed or kept (`max_answer_bytes` each, `SESSION_ANSWER_BYTES` for
        all of a case's answers): an oversized answer must end in an escalation, never in an
        audit error raised from `decide`."""
        text = att.raw or ""
        size = len(text.encode("utf-8", "surrogatepass"))
        limit = self.fb.config.max_answer_bytes
        if size <= limit:  # as the event stores it (control characters escaped), for the total
            self.answer_bytes += len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size <= limit and self.answer_bytes <= SESSION_ANSWER_BYTES:
            return None
        att.raw = text[:KEPT_OF_A_LARGE_ANSWER]
        att.error = "answer_too_large"
        att.errors = [f"the answer has {size} bytes; at most {limit} are accepted" if size > limit else
                      f"the answers to this case have {self.answer_bytes} bytes together; at most "
                      f"{SESSION_ANSWER_BYTES} are accepted"]
        return LLMOutcome(failure="answer_too_large", message=att.errors[0])

    def repair_guards(self, proposal: Proposal, reasons: list[str]) -> LLMOutcome | None:
        """Send the gate's denial back once (or `guard_repairs` times); None when no repair is left."""
        if self.guard_repairs >= self.fb.config.guard_repairs:
            return None
        self.guard_repairs += 1
        self.messages = self.messages + [
            {"role": "assistant", "content": json.dumps({"decision": "propose", "action": proposal.action,
                                                         "params": proposal.params}, sort_keys=True)},
            repair_message(reasons, "guard")]
        return self.ask("guard_repair")
