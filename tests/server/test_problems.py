"""Every stable code the engine raises maps to a problem+json status that is not a 500, and the
problem body carries the code (engine/server/problems.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import AuthError, CaseError, RulebridgeError
from engine.server.problems import STATUS_BY_CODE, problem_of, status_of

ENGINE = Path(__file__).parent.parent.parent / "engine"
# `code="..."` / `code = "..."` / `Diagnostic("...", ...)` / `error_code="..."` in the engine's source
_RAISED = re.compile(r'\b(?:code\s*=\s*|Diagnostic\(\s*)"([a-z][a-z0-9_]+)"')
_EDGES = ("cli", "server")  # codes only an edge produces (exit codes, its own problems)


def raised_codes() -> set[str]:
    codes: set[str] = set()
    for path in ENGINE.rglob("*.py"):
        if path.relative_to(ENGINE).parts[0] in _EDGES:
            continue
        codes |= set(_RAISED.findall(path.read_text(encoding="utf-8")))
    return codes


def engine_error_classes() -> list[type[RulebridgeError]]:
    import engine.act.connectors.base
    import engine.act.connectors.registry
    import engine.act.decision_store
    import engine.act.execute
    import engine.act.ledger
    import engine.audit.canonical
    import engine.govern.review
    import engine.kg.remote
    import engine.kg.store
    import engine.server.idempotency
    import engine.storage  # noqa: F401  (each defines a subclass of RulebridgeError)

    seen, todo = [], [RulebridgeError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
    return seen


def test_the_source_has_codes_to_check():
    codes = raised_codes()
    assert {"auth_key_revoked", "review_hash_mismatch", "not_executable", "case_too_large"} <= codes
    assert len(codes) > 60


@pytest.mark.parametrize("code", sorted(raised_codes()))
def test_no_code_the_engine_raises_becomes_a_500(code):
    for cls in engine_error_classes():
        exc = cls("boom", code=code)
        body = problem_of(exc, instance="/v1/x")
        assert body["status"] != 500 and 400 <= body["status"] < 600, (cls.__name__, code)
        assert body["code"] == code and body["type"].endswith(code)


def test_codes_the_table_maps_keep_their_status_whatever_the_class():
    assert status_of(AuthError("x", code="auth_key_revoked")) == 401
    assert status_of(AuthError("x", code="auth_wrong_kind")) == 403
    assert status_of(CaseError("x", code="case_too_large")) == 413
    assert status_of(RulebridgeError("x", code="review_hash_mismatch")) == 409
    assert status_of(RulebridgeError("x", code="a_code_nobody_mapped")) == 400
    assert status_of(CaseError("x", code="a_code_nobody_mapped")) == 422
    assert STATUS_BY_CODE["internal_error"] == 500


def test_a_bug_is_a_500_and_a_database_failure_a_503():
    import sqlite3

    assert problem_of(KeyError("x"))["status"] == 500
    assert problem_of(KeyError("x"))["code"] == "internal_error"
    assert problem_of(sqlite3.OperationalError("database is locked"))["code"] == "state_unavailable"
    assert problem_of(OSError(28, "No space left on device"))["status"] == 503
