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

    return Engine.open(MINI, new_id=iter(f"d{i}" for i in range(10**9)).__next__)


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
