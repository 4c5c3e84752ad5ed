"""The resources of the HTTP API (v1): each handler parses, calls the `Engine` facade, renders.

Who may call what (a key is `Authorization: Bearer rbk_...`; without one, only where keys are
not required):

| resources                                   | key                                              |
|---------------------------------------------|--------------------------------------------------|
| decide, explain, execute                    | an agent's (the facade proves and scopes it)     |
| review items: list, show, approve, reject   | a reviewer's (an agent key is refused: 403)      |
| audit: verify, show, export, stats          | a reviewer's                                     |
| a recorded decision                         | the agent that asked, or a reviewer              |
| actions, rulesets                           | any                                              |
| /healthz, /readyz, /metrics                 | none (for probes and scrapers)                   |

Handlers are plain functions: FastAPI runs them in its thread pool, as the engine is synchronous.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.errors import AuthError, Diagnostic, RulebridgeError, shown, suggest_help
from engine.server.app import Served
from engine.server.metrics import CONTENT_TYPE
from engine.server.models import (
    ActionV1,
    ApproveV1,
    AuditVerifyV1,
    CaseV1,
    DecisionV1,
    ExecutionV1,
    ExplanationV1,
    HealthV1,
    ProblemV1,
    RecordedDecisionV1,
    RejectV1,
    ReviewItemV1,
    RulesetV1,
)
from engine.server.problems import problem_of

_bearer = HTTPBearer(auto_error=False, bearerFormat="rbk_<key id>_<secret>",
                     description="an agent's or reviewer's key (`rulebridge agents add ID`)")
_ERROR_STATUSES = (400, 401, 403, 404, 408, 409, 413, 422, 502, 503)
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ProblemV1, "description": "a problem (RFC 9457)"}
                                           for s in _ERROR_STATUSES}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                              description="a retry with the same key gets the first response; "
                                                          "the same key for another request is a 409")]
Since = Annotated[str | None, Query(max_length=40, description="events at or after this ISO date/time")]
Until = Annotated[str | None, Query(max_length=40, description="events before this ISO date/time")]
Ident = Annotated[str, Path(min_length=1, max_length=200)]
ReviewStatus = Literal["pending", "approved", "rejected", "expired", "applied", "all"]


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


def served(request: Request) -> Served:
    s: Served = request.app.state.served
    return s


def bearer_token(creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> str | None:
    return creds.credentials if creds is not None else None


Token = Annotated[str | None, Depends(bearer_token)]
App = Annotated[Served, Depends(served)]


def caller(s: Served, token: str | None, kind: str | None) -> str | None:
    """The identity a key proves for an endpoint the facade does not authenticate itself (reads)."""
    if token is None:
        if s.require_keys:
            raise AuthError(f"this server requires a key: `Authorization: Bearer rbk_...`"
                            f"{f' of a {kind}' if kind else ''}", code="auth_required")
        return None
    who: str = s.engine.identities.authenticate(token, kind)
    return who


def render(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str, ensure_ascii=False).encode(), status_code=status,
                    media_type="application/json")


def once(s: Served, token: str | None, key: str | None, what: str, run: Callable[[], Response]) -> Response:
    """Run `run` once per `Idempotency-Key` (a retry gets the first response; see `idempotency`)."""
    if key is None:
        return run()
    from engine.server.idempotency import fingerprint, scope_of

    store, scope = s.idempotency, scope_of(token)
    kept = store.claim(scope, key, fingerprint(what))
    if kept is not None:
        return Response(kept.body, status_code=kept.status, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})
    try:
        response = run()
    except BaseException:
        store.release(scope, key)
        raise
    store.keep(scope, key, response.status_code, bytes(response.body))
    return response


v1 = APIRouter(prefix="/v1", responses=ERRORS)


# -- decisions ------------------------------------------------------------------------------------
@v1.post("/decisions", response_model=DecisionV1, tags=["decisions"], summary="Decide a case")
def decide(case: CaseV1, s: App, token: Token, idempotency_key: IdempotencyKey = None,
           execute: Annotated[bool, Query(description="run the accepted actions now, exactly once")] = False
           ) -> Response:
    """Decide a case through the governed path (and, with `execute`, act on it). A deny or an
    escalation is a normal result; an escalation waits in the review queue (`review_id`)."""
    body = case.model_dump(exclude_none=True)

    def run() -> Response:
        start = time.perf_counter()
        d = s.engine.decide(body, key=token, execute=execute)
        out = d.to_json(s.engine.ws.rulesets[d.ruleset])
        s.metrics.decide_latency.labels(str(execute).lower()).observe(time.perf_counter() - start)
        s.metrics.decided(out)
        return render(out)

    return once(s, token, idempotency_key, f"decide\0{execute}\0{json.dumps(body, sort_keys=True)}", run)


@v1.post("/explanations", response_model=ExplanationV1, tags=["decisions"], summary="Decide a case and explain it")
def explain(case: CaseV1, s: App, token: Token) -> Response:
    """Decide a case (not queued for review, not executed) with a trace of every rule: why it
    matched, or the first condition that failed and its values (why not)."""
    x = s.engine.explain(case.model_dump(exclude_none=True), key=token)
    out = x.to_json()
    s.metrics.decided(out)
    return render(out)


@v1.get("/decisions/{decision_id}", response_model=RecordedDecisionV1, tags=["decisions"],
        summary="A recorded decision")
def get_decision(decision_id: Ident, s: App, token: Token) -> Response:
    """A decision as the audit log recorded it: who decided, and every step (received, facts,
    matched, llm, verified, decided, reviewed, executed) with its data — the why of the decision."""
    from engine.act.decision_store import DecisionNotFound
    from engine.audit.trail import who_decided

    who = caller(s, token, None)
    events = s.engine.audit.trace(decision_id)
    asked_by = events[0].agent if events else None
    if not events or (who is not None and who != asked_by and s.engine.ws.agents.reviewer(who) is None):
        raise DecisionNotFound(f"no decision `{shown(decision_id)}`")  # another agent's: not shown, not confirmed
    status = None
    with suppress(DecisionNotFound):  # only decisions that act are kept for execution
        status = s.engine.decisions.get(decision_id).status
    return render({"id": decision_id, "decided_by": who_decided(events), "status": status,
                   "events": [e.to_json() for e in events]})


@v1.post("/decisions/{decision_id}/execute", response_model=ExecutionV1, tags=["decisions"],
         summary="Execute a decision")
def execute(decision_id: Ident, s: App, token: Token, idempotency_key: IdempotencyKey = None) -> Response:
    """Run the accepted actions of a decision, or of an approved review item (`R-...`), exactly
    once, after verifying them again against the graph as it is now. Running it again returns the
    recorded outcome; nothing runs twice."""

    def run() -> Response:
        res = s.engine.execute(decision_id, key=token)
        out = res.to_json()
        s.metrics.executed(out)
        return render(out)

    return once(s, token, idempotency_key, f"execute\0{decision_id}", run)


# -- the review queue -----------------------------------------------------------------------------
def _reviewer_may(s: Served, who: str | None, ruleset: str) -> bool:
    if who is None:
        return True
    found = s.engine.ws.agents.reviewer(who)
    return found is not None and bool(found.may_review(ruleset))


@v1.get("/reviews", response_model=list[ReviewItemV1], tags=["reviews"], summary="List review items")
def review_list(s: App, token: Token, status: ReviewStatus = "pending") -> Response:
    """Review items with a status (pending by default), those of the reviewer's rulesets."""
    who = caller(s, token, "reviewer")
    items = s.engine.review_list(None if status == "all" else status)
    return render([i.to_json() for i in items if _reviewer_may(s, who, i.ruleset)])


@v1.get("/reviews/{item_id}", response_model=ReviewItemV1, tags=["reviews"], summary="Show a review item")
def review_show(item_id: Ident, s: App, token: Token) -> Response:
    """One review item with its full context: case, facts, rules, LLM attempts, verdict, proposal hash."""
    who = caller(s, token, "reviewer")
    item = s.engine.review_show(item_id)
    if not _reviewer_may(s, who, item.ruleset):
        raise AuthError([Diagnostic("reviewer_not_permitted",
                                    f"reviewer `{who}` may not see `{item.ruleset}` escalations")])
    return render(item.to_json())


@v1.post("/reviews/{item_id}/approve", response_model=ReviewItemV1, tags=["reviews"], summary="Approve")
def review_approve(item_id: Ident, body: ApproveV1, s: App, token: Token) -> Response:
    """Approve an item, bound to the proposal hash the reviewer saw (or to the action and
    parameters they give): verified again now against the deny guards; it can then be executed once."""
    if body.proposal_hash is None and body.action is None:
        raise RulebridgeError([Diagnostic("request_invalid", "`body.proposal_hash`: give the hash of the proposal "
                                          "you reviewed (or `action` and `params` of your own)")])
    if (body.action is None) != (body.params is None):
        raise RulebridgeError([Diagnostic("review_incomplete", "give `action` and `params` together")])
    item = s.engine.review_approve(item_id, reviewer=body.reviewer, action=body.action, params=body.params,
                                   expect_hash=body.proposal_hash, note=body.note, key=token)
    return render(item.to_json())


@v1.post("/reviews/{item_id}/reject", response_model=ReviewItemV1, tags=["reviews"], summary="Reject")
def review_reject(item_id: Ident, body: RejectV1, s: App, token: Token) -> Response:
    """Reject an item, with a reason."""
    item = s.engine.review_reject(item_id, reviewer=body.reviewer, reason=body.reason, key=token)
    return render(item.to_json())


# -- the audit log --------------------------------------------------------------------------------
def _window(since: str | None, until: str | None) -> None:
    from engine.audit.log import utc_text

    for what, value in (("since", since), ("until", until)):
        if value is not None:
            utc_text(value, what=what)  # audit_bad_time before anything is streamed


@v1.get("/audit/verify", response_model=AuditVerifyV1, tags=["audit"], summary="Verify the chain")
def audit_verify(s: App, token: Token,
                 limit: Annotated[int | None, Query(ge=1, le=10**12, description="only the first N events")] = None
                 ) -> Response:
    """Walk the hash chain and name the first broken event, or confirm it is valid."""
    caller(s, token, "reviewer")
    return render(s.engine.audit.verify(limit=limit).to_json())


@v1.get("/audit/decisions/{decision_id}", response_model=list[dict[str, Any]], tags=["audit"],
        summary="The events of a decision")
def audit_show(decision_id: Ident, s: App, token: Token) -> Response:
    """Every event of one decision, in order, with hashes."""
    caller(s, token, "reviewer")
    events = s.engine.audit.trace(decision_id)
    if not events:
        raise RulebridgeError([Diagnostic("audit_unknown_decision", f"no audit events for decision "
                                          f"`{shown(decision_id)}`")])
    return render([e.to_json() for e in events])


@v1.get("/audit/events", response_class=NDJSONResponse, tags=["audit"], summary="Export events (JSON Lines)")
def audit_export(s: App, token: Token, since: Since = None, until: Until = None) -> NDJSONResponse:
    """Every event in the window as JSON Lines, streamed, with its hash and signature (so an
    export can be verified again elsewhere)."""
    from engine.canonical import canonical_json

    caller(s, token, "reviewer")
    _window(since, until)
    log = s.engine.audit

    def lines() -> Iterator[bytes]:
        for e in log.events(since, until):
            yield (canonical_json(e.to_json()) + "\n").encode()

    return NDJSONResponse(lines())


@v1.get("/audit/stats", response_model=dict[str, Any], tags=["audit"], summary="Decision statistics")
def audit_stats(s: App, token: Token, since: Since = None, until: Until = None) -> Response:
    """Decisions by source and outcome, per rule, ruleset and agent; events by step."""
    caller(s, token, "reviewer")
    _window(since, until)
    return render(s.engine.audit.stats(since, until))


# -- the catalog and the rules --------------------------------------------------------------------
def _action(s: Served, name: str) -> dict[str, Any]:
    spec = s.engine.ws.actions.actions[name]
    return {"name": name, "description": spec.description,
            "connector": spec.execute.connector if spec.execute is not None else None,
            "params_schema": s.engine.ws.actions.json_schema(name),
            "schema_ref": f"#/components/schemas/ActionParams.{name}"}


def _unknown(code: str, what: str, name: str, known: Any) -> RulebridgeError:
    help_, suggestion = suggest_help(name, known, what)
    return RulebridgeError([Diagnostic(code, f"no {what[:-1]} `{shown(name)}`", help=help_, suggestion=suggestion)])


@v1.get("/actions", response_model=list[ActionV1], tags=["catalog"], summary="The action catalog")
def actions(s: App, token: Token) -> Response:
    """Every action with the JSON Schema of its parameters (the model the gate validates with)."""
    caller(s, token, None)
    return render([_action(s, n) for n in sorted(s.engine.ws.actions.actions)])


@v1.get("/actions/{name}", response_model=ActionV1, tags=["catalog"], summary="One action")
def action(name: Ident, s: App, token: Token) -> Response:
    caller(s, token, None)
    if name not in s.engine.ws.actions.actions:
        raise _unknown("action_unknown", "actions", name, s.engine.ws.actions.actions)
    return render(_action(s, name))


def _ruleset(rs: Any) -> dict[str, Any]:
    return {"name": rs.name, "description": rs.description, "case_type": rs.case_type,
            "revision": f"{rs.name}@{rs.version}", "hit_policy": rs.hit_policy,
            "rules": [r.id for r in rs.rules], "guards": [g.id for g in rs.guards], "actions": rs.actions}


@v1.get("/rulesets", response_model=list[RulesetV1], tags=["rules"], summary="The rulesets")
def rulesets(s: App, token: Token) -> Response:
    """Every loaded ruleset with its revision (the hash of its source, recorded with each decision)."""
    caller(s, token, None)
    return render([_ruleset(rs) for _, rs in sorted(s.engine.ws.rulesets.items())])


@v1.get("/rulesets/{name}", response_model=RulesetV1, tags=["rules"], summary="One ruleset")
def ruleset(name: Ident, s: App, token: Token) -> Response:
    caller(s, token, None)
    found = s.engine.ws.rulesets.get(name)
    if found is None:
        raise _unknown("ruleset_unknown", "rulesets", name, s.engine.ws.rulesets)
    return render(_ruleset(found))


# -- probes ---------------------------------------------------------------------------------------
ops = APIRouter(tags=["operations"])


@ops.get("/healthz", response_model=HealthV1, summary="The process is up")
def healthz() -> Response:
    return render({"status": "ok", "checks": {}})


@ops.get("/readyz", response_model=HealthV1, summary="Ready to serve",
         responses={503: {"model": HealthV1, "description": "not ready: a check failed"}})
def readyz(s: App) -> Response:
    """The graph, the state database and the rules are loaded."""
    from sqlalchemy import text

    store = s.engine.ws.store
    checks: dict[str, Any] = {"graph": store is not None, "rules": len(s.engine.ws.rulesets) > 0}
    try:
        with s.engine.database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["state_database"] = True
    except Exception as exc:  # noqa: BLE001  (not ready is the answer, whatever the database says)
        checks["state_database"] = False
        checks["state_database_error"] = problem_of(exc)["detail"]
    ok = all(v is True for k, v in checks.items() if not k.endswith("_error"))
    return render({"status": "ready" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


@ops.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(s: App) -> Response:
    return Response(s.metrics.text(), media_type=CONTENT_TYPE)


def install_routes(app: FastAPI) -> None:
    """Mount the v1 resources and the probes on `app`."""
    app.include_router(v1)
    app.include_router(ops)

