"""Shared fixtures: the mini workspace (tests/fixtures/mini) opened once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# No test may reach a real model (engine/llm/models.py refuses and counts such calls) or write
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


@pytest.fixture(autouse=True)
def _no_live_model_calls():
    """Fail any test that tried to call a live model, even if the engine escalated cleanly."""
    from engine.llm.models import blocked_live_calls

    before = len(blocked_live_calls)
    yield
    assert len(blocked_live_calls) == before, f"a test tried to call a live model: {blocked_live_calls[before:]}"


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
