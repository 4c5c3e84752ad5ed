"""How the HTTP API fails: every error is an `application/problem+json` body (RFC 9457) carrying
the engine's stable code, with a status mapped here and only here.

| what                                                              | status |
|-------------------------------------------------------------------|--------|
| no key, a malformed, unknown or revoked key                       | 401    |
| an identity that may not do this (wrong kind, out of scope, ...)  | 403    |
| no such decision, review item, action, ruleset, route             | 404    |
| the state says no: not pending, not executable, a hash mismatch   | 409    |
| a body or case larger than allowed                                | 413    |
| a malformed body, case or parameter (names the field)             | 422    |
| a store, the graph, a connector or the configuration is down      | 503    |
| a system of record refused the change for good                    | 502    |
| anything else: a bug (`internal_error`)                           | 500    |

A deny or an escalation is a normal result (200), not an error. An engine error whose code is
not listed takes its class's status (`_CLASS_STATUS`), else 400: no error the engine raises on
purpose becomes a 500.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

from engine.errors import CODES, AuthError, CaseError, Diagnostic, RulebridgeError, shown

PROBLEM_JSON = "application/problem+json"
MAX_MESSAGE = 500

# Codes first (one code, one status, wherever it is raised); see the table above.
STATUS_BY_CODE: dict[str, int] = {
    # identity
    "auth_required": 401, "auth_key_malformed": 401, "auth_key_unknown": 401, "auth_key_revoked": 401,
    "auth_identity_revoked": 403, "auth_identity_mismatch": 403, "auth_wrong_kind": 403,
    "agent_unknown": 403, "agent_not_permitted": 403, "reviewer_unknown": 403, "reviewer_not_permitted": 403,
    "agent_name_invalid": 422, "reviewer_name_invalid": 422, "auth_error": 401,
    # cases
    "case_invalid": 422, "no_ruleset": 422, "case_too_large": 413, "request_invalid": 422,
    "request_too_large": 413, "request_timeout": 408,
    # the review queue
    "review_not_found": 404, "review_not_pending": 409, "review_conflict": 409, "review_hash_mismatch": 409,
    "review_denied": 409, "review_hash_too_short": 422, "review_needs_action": 422, "review_incomplete": 422,
    "review_error": 409,
    # decisions and execution
    "decision_not_found": 404, "not_executable": 409, "chain_mismatch": 409, "step_conflict": 409,
    "step_needs_review": 409, "ledger_inconsistent": 409, "compensation_failed": 409, "reverify_refused": 409,
    "idempotency_key_reused": 409, "idempotency_in_progress": 409, "idempotency_key_invalid": 422,
    "execution_error": 409,
    "empty_chain": 422, "invalid_chain": 422, "no_inverse": 409,
    "no_connector": 503, "unknown_connector": 503, "connector_config": 503, "ledger_unavailable": 503,
    "ledger_error": 503,
    # connectors: transient (503) or refused for good by the system of record (502)
    "connector_bad_params": 422, "connector_permanent": 502, "connector_http_rejected": 502,
    "connector_constraint": 502, "connector_sql_error": 502, "connector_no_effect": 502,
    "connector_ambiguous": 502, "connector_unbound": 503, "connector_error": 502,
    # stores, the graph, the audit log, the workspace
    "state_unavailable": 503, "state_invalid": 503, "graph_unavailable": 503, "graph_query_failed": 503,
    "graph_update_failed": 503, "graph_update_syntax": 503, "graph_update": 503, "graph_bad_value": 422,
    "audit_unavailable": 503, "audit_broken": 503, "db_corrupt": 503, "audit_not_found": 404,
    "audit_unknown_decision": 404, "audit_bad_time": 422, "audit_bad_format": 422, "audit_bad_anchor": 422,
    "audit_bad_key": 503, "audit_invalid": 422, "audit_not_json": 422, "audit_error": 503,
    "load_error": 503, "config": 503, "io_error": 503,
    # the edge itself
    "not_found": 404, "action_unknown": 404, "ruleset_unknown": 404, "method_not_allowed": 405,
    "internal_error": 500,
}


def _class_status(exc: RulebridgeError) -> int:
    """The status of an engine error whose code is not in the table, by its class."""
    from engine.act.connectors.base import PermanentError, TransientError
    from engine.audit.canonical import AuditError
    from engine.errors import LoadError
    from engine.storage import StorageError

    if isinstance(exc, AuthError):
        return 403
    if isinstance(exc, CaseError):
        return 422
    if isinstance(exc, TransientError | StorageError | LoadError | AuditError):
        return 503
    if isinstance(exc, PermanentError):
        return 502
    return 400


def status_of(exc: RulebridgeError) -> int:
    """The HTTP status of an engine error: by its code, else by its class (never 500)."""
    status = STATUS_BY_CODE.get(exc.code)
    return status if status is not None and status != 500 else _class_status(exc)


def problem(code: str, status: int, detail: str, *, instance: str | None = None,
            diagnostics: list[Diagnostic] | None = None, **extra: Any) -> dict[str, Any]:
    """A problem details object (RFC 9457) with the engine's stable `code`."""
    body: dict[str, Any] = {"type": f"urn:rulebridge:problem:{code}", "title": CODES.get(code, code.replace("_", " ")),
                            "status": status, "detail": shown(detail, MAX_MESSAGE), "code": code}
    if instance is not None:
        body["instance"] = shown(instance, 200)
    if diagnostics:
        body["diagnostics"] = [_diagnostic_json(d) for d in diagnostics[:50]]
    body.update(extra)
    return body


def _diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    return {"code": d.code, "message": shown(d.message, MAX_MESSAGE), "severity": d.severity.value,
            "help": d.help, "suggestion": d.suggestion}


def _database_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DatabaseError, InterfaceError

    return isinstance(exc, DatabaseError | InterfaceError | sqlite3.DatabaseError)


def problem_of(exc: BaseException, *, instance: str | None = None) -> dict[str, Any]:
    """The problem details of any exception a handler let escape (as the CLI's `diagnose`)."""
    if isinstance(exc, RulebridgeError):
        diags = exc.diagnostics or [Diagnostic(exc.code, str(exc))]
        detail = "; ".join(d.message for d in diags[:5]) or exc.code
        return problem(exc.code, status_of(exc), detail, instance=instance, diagnostics=diags)
    if _database_error(exc):
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        return problem("state_unavailable", 503, f"the state database cannot be used: {first}", instance=instance)
    if isinstance(exc, OSError):
        what = (exc.strerror or str(exc)).lower()
        name = errno.errorcode.get(exc.errno or 0)
        return problem("io_error", 503, f"cannot read or write: {what}" + (f" ({name})" if name else ""),
                       instance=instance)
    return problem("internal_error", 500, f"unexpected {type(exc).__name__}", instance=instance)
