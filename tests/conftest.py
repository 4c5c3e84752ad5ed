"""Shared fixtures: the mini workspace (tests/fixtures/mini) opened once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests import model_guard

# No test may reach a real model (engine/llm/clients.py refuses and counts such calls) or write
# state into a workspace of the repository: the review queue goes to a temporary database.
os.environ["RULEBRIDGE_FORBID_LIVE_LLM"] = "1"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
_STATE = tempfile.mkdtemp(prefix="rulebridge-test-state-")
os.environ["RULEBRIDGE_STATE_URL"] = f"sqlite:///{_STATE}/state.db"

MINI = Path(__file__).parent / "fixtures" / "mini"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def mini_engine():
    from engine import Engine

    return Engine.open(MINI, new_id=iter(f"d{i}" for i in range(10**9)).__next__,
                       state=f"sqlite:///{tempfile.mkdtemp(prefix='rulebridge-mini-')}/state.db")


@pytest.fixture(scope="session")
def mini_reference_engine():
    from engine import Engine

    return Engine.open(MINI, matcher="reference")


# --- model calls ------------------------------------------------------------------------------
# Any model call a test did not plan fails it (tests/model_guard.py): a live `LiteLLMModel`, a
# direct `litellm.completion`, a `ScriptedModel` past the end of its script. A test marked
# `@pytest.mark.allow_model_requests` may call a live model.
model_guard.install()
_GUARD_SINCE = pytest.StashKey[tuple[int, int]]()


def _unplanned_calls(item: pytest.Item) -> list[str]:
    """The unplanned model calls made since the test's guard started, taken off the records."""
    from engine.llm.clients import blocked_live_calls

    refused, recorded = item.stash[_GUARD_SINCE]
    calls = [f"a live `LiteLLMModel` for `{name}` (the engine refused it)"
             for name in blocked_live_calls[refused:]]
    item.stash[_GUARD_SINCE] = (len(blocked_live_calls), recorded)
    return calls + model_guard.GUARD.taken(recorded)


def _fail_unplanned(calls: list[str]) -> None:
    if calls:
        pytest.fail(f"{len(calls)} unplanned model call(s), even if the engine escalated cleanly: "
                    + "; ".join(calls) + f"\n{model_guard.HELP}", pytrace=False)


@pytest.fixture(autouse=True)
def _model_requests_guard(request, monkeypatch):
    """Refuse live model calls unless the test is marked `allow_model_requests`; fail the test
    for every unplanned call made in its fixtures (the call itself is checked by the hook below)."""
    from engine.llm.clients import NO_LIVE_ENV, blocked_live_calls

    allowed = request.node.get_closest_marker(model_guard.MARKER) is not None
    if allowed:
        monkeypatch.delenv(NO_LIVE_ENV, raising=False)
    request.node.stash[_GUARD_SINCE] = (len(blocked_live_calls), len(model_guard.GUARD.unplanned))
    model_guard.GUARD.allowed = allowed
    try:
        yield
    finally:
        model_guard.GUARD.allowed = False
    _fail_unplanned(_unplanned_calls(request.node))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Fail the test itself (not its teardown) when its body made an unplanned model call."""
    result = yield  # a test that failed already keeps its calls for the teardown's report
    if _GUARD_SINCE in item.stash:
        _fail_unplanned(_unplanned_calls(item))
    return result


# --- SQL backends -----------------------------------------------------------------------------
# Suites that store state (review queue, execution ledger, audit log) run on SQLite and, when
# RULEBRIDGE_TEST_PG_URL names a PostgreSQL database (`.ci/run` starts one), on PostgreSQL too.
# With RULEBRIDGE_REQUIRE_PG=1 (set by `.ci/run`) a missing server fails instead of skipping.
PG_URL = os.environ.get("RULEBRIDGE_TEST_PG_URL", "")


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def sql_url(request, tmp_path):
    """A fresh, empty database URL: a SQLite file, or a new schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    if not PG_URL:
        if os.environ.get("RULEBRIDGE_REQUIRE_PG") == "1":
            pytest.fail("RULEBRIDGE_REQUIRE_PG=1 but RULEBRIDGE_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL: set RULEBRIDGE_TEST_PG_URL (see .ci/run)")
    import secrets

    from sqlalchemy import create_engine, text

    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    from engine import storage

    storage.tracked = []  # the engines this test opens, closed before the schema is dropped
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        for eng in storage.tracked:
            eng.dispose()
        storage.tracked = None
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
