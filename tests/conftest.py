"""Shared fixtures: the mini workspace (tests/fixtures/mini) opened once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

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
