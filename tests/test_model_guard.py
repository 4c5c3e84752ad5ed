"""The test-wide guard on model calls (tests/model_guard.py, tests/conftest.py): an unplanned model
call fails the test that made it, even when the engine escalated cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.llm.clients import NO_LIVE_ENV
from tests.model_guard import GUARD, MARKER, UnplannedModelCall

pytest_plugins = ["pytester"]
MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_direct_litellm_call_is_refused():
    import litellm

    assert litellm.completion.__model_guard__  # guarded when it was imported
    before = len(GUARD.unplanned)
    with pytest.raises(UnplannedModelCall) as info:
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES)
    # the refusal is the point of this test: take it off the record
    assert GUARD.taken(before) == ["`litellm.completion` for model `openai/gpt-4o-mini`"]
    assert str(info.value).startswith("unplanned model call: `litellm.completion` for model "
                                      "`openai/gpt-4o-mini`: plan it with a model double")
    assert f"`@pytest.mark.{MARKER}`" in str(info.value)


def test_litellm_with_a_mock_answer_is_a_planned_call():
    import litellm

    resp = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES,
                              mock_response="planned")
    assert resp.choices[0].message.content == "planned"


def test_the_guard_refuses_without_the_marker():
    assert not GUARD.allowed and os.environ.get(NO_LIVE_ENV) == "1"
    GUARD.check_litellm("completion", {"mock_response": "x"})  # planned: no error
    before = len(GUARD.unplanned)
    with pytest.raises(UnplannedModelCall):
        GUARD.check_litellm("acompletion", {"model": "m", "mock_response": None})  # no answer
    assert GUARD.taken(before) == ["`litellm.acompletion` for model `m`"]


@pytest.mark.allow_model_requests
def test_the_marker_allows_a_live_call():
    assert GUARD.allowed and NO_LIVE_ENV not in os.environ
    GUARD.check_litellm("completion", {"model": "m"})  # no error; no call is made here


INNER_CONFTEST = """
from tests.conftest import _model_requests_guard, pytest_runtest_call  # noqa: F401

def pytest_configure(config):
    config.addinivalue_line("markers", "allow_model_requests: may call a live model")
"""

INNER_TESTS = """
from engine.llm.clients import LiteLLMModel, ScriptedModel
from tests.brightwater import answer, discount_case, engine


def test_live_model_through_the_engine():
    d = engine(LiteLLMModel("openai/gpt-4o-mini"), retries=0).decide(discount_case(), review=False)
    assert d.reason == "llm_live_forbidden"  # a clean escalation: passes without the guard


def test_scripted_model_runs_out():
    model = ScriptedModel([])
    d = engine(model).decide(discount_case(), review=False)
    assert d.reason == "llm_script_exhausted" and model.calls == 1  # passes without the guard


def test_scripted_model_with_its_answer():
    d = engine(ScriptedModel([answer()])).decide(discount_case(), review=False)
    assert d.outcome == "execute"
"""


def test_an_unplanned_call_fails_the_test_that_made_it(pytester, monkeypatch):
    from engine.llm.clients import blocked_live_calls

    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))

    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    before = len(blocked_live_calls)
    # In a process of its own: an in-process run re-imports SQLAlchemy's dialects, whose warnings
    # (errors here) would then fail the tests that run after it in this process.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert len(blocked_live_calls) == before
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_live_model_through_the_engine _*",
        ("1 unplanned model call(s), even if the engine escalated cleanly: a live `LiteLLMModel` "
         "for `openai/gpt-4o-mini` (the engine refused it)"),
        ("plan it with a model double (ScriptedModel with an answer for every call, ReplayModel, "
         "litellm's `mock_response=`) or mark the test `@pytest.mark.allow_model_requests`"),
        "*_ test_scripted_model_runs_out _*",
        ("1 unplanned model call(s), even if the engine escalated cleanly: `ScriptedModel` "
         "`scripted` has no answer left for call 1 (its script has 0)"),
    ])
