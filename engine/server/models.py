"""The wire models of the HTTP API (v1): request bodies are checked here (a bad one is a 422
naming the field); response models document what the handlers return, which is the engine's own
JSON (`Decision.to_json`, `ReviewItem.to_json`, ...), not a copy of it.

An action's parameters are described by the action catalog's own pydantic models: the OpenAPI
document carries `ActionCatalog.json_schema(name)` for each action (see `engine.server.app`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_OPEN = ConfigDict(extra="allow")
_CLOSED = ConfigDict(extra="forbid")


class CaseV1(BaseModel):
    """A case: one request for a decision (the same shape as a case file of `rulebridge decide`)."""

    model_config = _CLOSED
    type: str = Field(min_length=1, max_length=200, description="the case type, e.g. `invoice.received`")
    payload: dict[str, Any] = Field(default_factory=dict, description="the case's business fields")
    id: str | None = Field(default=None, max_length=200, description="the caller's id of the case")
    agent: str | None = Field(default=None, max_length=200,
                              description="the asking agent; with a key it may only repeat the key's identity")
    as_of: str | None = Field(default=None, max_length=40, description="the date the case is decided as of (ISO)")


class ApproveV1(BaseModel):
    """A reviewer's approval: bound to the hash of the proposal they reviewed."""

    model_config = _CLOSED
    proposal_hash: str | None = Field(default=None, min_length=12, max_length=64, pattern="^[0-9a-fA-F]+$",
                                      description="the proposal hash shown with the item (at least 12 hex "
                                                  "characters); required unless `action` and `params` are given")
    action: str | None = Field(default=None, min_length=1, max_length=200,
                               description="approve this action instead of the proposal waiting")
    params: dict[str, Any] | None = Field(default=None, description="its parameters (with `action`)")
    note: str = Field(default="", max_length=2000)
    reviewer: str | None = Field(default=None, max_length=200,
                                 description="who decides; with a key it may only repeat the key's identity")


class RejectV1(BaseModel):
    """A reviewer's rejection, with a reason."""

    model_config = _CLOSED
    reason: str = Field(min_length=1, max_length=2000)
    reviewer: str | None = Field(default=None, max_length=200)


class ProblemV1(BaseModel):
    """An error (RFC 9457 problem details) with the engine's stable `code`."""

    model_config = _OPEN
    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class DecisionV1(BaseModel):
    """A decision (`Decision.to_json`): outcome, source, reasons, proposals, revisions, facts."""

    model_config = _OPEN
    version: str
    id: str
    ruleset: str
    outcome: str
    source: str
    reason: str
    message: str
    proposals: list[dict[str, Any]]
    execution: dict[str, Any] | None = None
    review_id: str | None = None


class ExplanationV1(DecisionV1):
    """A decision with a trace of every rule: why it matched, or the first condition that failed."""

    explanation: list[dict[str, Any]]


class RecordedDecisionV1(BaseModel):
    """A decision as the audit log recorded it: who decided, and every step with its data."""

    model_config = _OPEN
    id: str
    decided_by: dict[str, Any]
    status: str | None = None
    events: list[dict[str, Any]]


class ExecutionV1(BaseModel):
    """How a decision's accepted actions ran (`ExecutionOutcome.to_json`)."""

    model_config = _OPEN
    decision_id: str
    outcome: str
    steps: list[dict[str, Any]]
    refused: list[dict[str, Any]]


class ReviewItemV1(BaseModel):
    """A review item: an escalation with its full context (`ReviewItem.to_json`)."""

    model_config = _OPEN
    id: str
    decision_id: str
    ruleset: str
    status: str
    proposal: dict[str, Any] | None = None
    proposal_hash: str | None = None


class ActionV1(BaseModel):
    """An action of the catalog with the JSON Schema of its parameters."""

    model_config = _OPEN
    name: str
    description: str
    connector: str | None = None
    params_schema: dict[str, Any]


class RulesetV1(BaseModel):
    """A loaded ruleset and its revision."""

    model_config = _OPEN
    name: str
    case_type: str
    revision: str
    hit_policy: str
    rules: list[str]
    guards: list[str]


class AuditVerifyV1(BaseModel):
    """The audit chain walked (`VerifyReport.to_json`)."""

    model_config = _OPEN
    ok: bool
    checked: int


class HealthV1(BaseModel):
    """Whether the process is up (`/healthz`) or ready to serve (`/readyz`), with each check."""

    model_config = _OPEN
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
