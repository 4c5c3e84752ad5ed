"""The test-wide guard on model calls, as pydantic-ai's `ALLOW_MODEL_REQUESTS = False`.

A test may call the model doubles it planned: `ScriptedModel`, `ReplayModel`, and litellm's own
`mock_response=` (no network). Any other call — a `LiteLLMModel` without a mock answer, or
`litellm.completion` and its siblings called directly — is refused and recorded, and the test
fails at teardown (`tests/conftest.py`), even when the engine turned the refusal into a clean
escalation. A test marked `@pytest.mark.allow_model_requests` may call a live model.

A `ScriptedModel` asked more often than its script has answers is an unplanned call too: the
engine would turn it into a quiet `llm_provider_error` escalation; here it is recorded and fails
the test.

The guard has three layers, so that no single bypass reaches a provider:
- the engine's own refusal (`RULEBRIDGE_FORBID_LIVE_LLM`, set by the conftest; it also reaches
  the CLI subprocesses), which records into `engine.llm.clients.blocked_live_calls`;
- litellm's entry points, wrapped the moment litellm is imported (it is imported lazily, and
  importing it costs seconds, so the suite does not import it up front);
- `ScriptedModel.complete`, wrapped to record a call past the end of its script.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

MARKER = "allow_model_requests"
# litellm's functions that would send a request to a provider.
LITELLM_ENTRY_POINTS = ("completion", "acompletion", "text_completion", "atext_completion",
                        "responses", "aresponses", "embedding", "aembedding", "batch_completion")


HELP = (f"plan it with a model double (ScriptedModel with an answer for every call, ReplayModel, "
        f"litellm's `mock_response=`) or mark the test `@pytest.mark.{MARKER}`")


class UnplannedModelCall(AssertionError):
    """A model call the test did not plan: no double, no mock answer, no marker."""


class ModelGuard:
    """Whether the running test may call a live model, and the unplanned calls it made."""

    def __init__(self) -> None:
        self.allowed = False  # INVARIANT: False outside a test marked `allow_model_requests`
        self.unplanned: list[str] = []
        self._lock = threading.Lock()  # the fallback calls its model on a thread of its own

    def record(self, what: str) -> None:
        """Record one unplanned call; the test fails when it ends."""
        with self._lock:
            self.unplanned.append(what)

    def check_litellm(self, name: str, kwargs: dict[str, Any]) -> None:
        """Refuse (record and raise) a litellm call that would reach a provider."""
        if self.allowed or kwargs.get("mock_response") is not None:
            return
        what = f"`litellm.{name}` for model `{kwargs.get('model')}`"
        self.record(what)
        raise UnplannedModelCall(f"unplanned model call: {what}: {HELP}")

    def taken(self, since: int) -> list[str]:
        """The unplanned calls recorded after the first `since`, removed from the record."""
        with self._lock:
            calls = self.unplanned[since:]
            del self.unplanned[since:]
        return calls


GUARD = ModelGuard()


def guard_litellm(module: ModuleType) -> None:
    """Wrap litellm's entry points (once) so that each asks `GUARD` first."""
    for name in LITELLM_ENTRY_POINTS:
        fn = getattr(module, name, None)
        if fn is None or getattr(fn, "__model_guard__", False):
            continue
        setattr(module, name, _guarded(name, fn))


def _guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        GUARD.check_litellm(name, kwargs)
        return fn(*args, **kwargs)

    call.__model_guard__ = True  # type: ignore[attr-defined]
    return call


class _GuardOnImport(importlib.abc.MetaPathFinder):
    """Finds litellm as the path finder does, and guards it as soon as its module has run."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "litellm":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_guard(module: ModuleType) -> None:
            exec_module(module)
            guard_litellm(module)

        spec.loader.exec_module = exec_and_guard  # type: ignore[method-assign]
        return spec


def guard_scripted_model() -> None:
    """Record a `ScriptedModel` call past its script (it raises; the engine escalates)."""
    from engine.llm.clients import ScriptedModel

    complete = ScriptedModel.complete
    if getattr(complete, "__model_guard__", False):
        return

    @functools.wraps(complete)
    def guarded(self: ScriptedModel, messages: Any, *, timeout: float) -> Any:
        from engine.llm.clients import ModelError

        try:
            return complete(self, messages, timeout=timeout)
        except ModelError as exc:
            # `calls` counts this call too: past the script means it had no answer for it
            if exc.kind == "script_exhausted":
                GUARD.record(f"`ScriptedModel` `{self.name}` has no answer left for call "
                             f"{self.calls} (its script has {len(self.script)})")
            raise

    guarded.__model_guard__ = True  # type: ignore[attr-defined]
    ScriptedModel.complete = guarded  # type: ignore[method-assign]


def install() -> None:
    """Install the guard for this process: litellm now or on import, and `ScriptedModel`."""
    if "litellm" in sys.modules:
        guard_litellm(sys.modules["litellm"])
    elif not any(isinstance(f, _GuardOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _GuardOnImport())
    guard_scripted_model()
