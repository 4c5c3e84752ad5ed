"""Model clients the fallback can call: a live litellm model, a replay file, a recorder, a scripted double.

Every model answers `complete(messages, timeout=...) -> Reply` or raises `ModelError` with a
stable kind; the fallback turns each kind into a clean escalation.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Messages = list[dict[str, str]]

# Set by the test suite: a live model call is refused and counted, and the test fails.
NO_LIVE_ENV = "RULEBRIDGE_FORBID_LIVE_LLM"
blocked_live_calls: list[str] = []


class ModelError(Exception):
    """A model call that produced no answer. `kind` is a stable code; `transient` ones are retried."""

    def __init__(self, kind: str, message: str, *, transient: bool = False):
        super().__init__(message)
        # timeout | rate_limit | provider_error | circuit_open | budget_exhausted | replay_miss | live_forbidden
        # | script_exhausted (the test double ran out of answers)
        self.kind = kind
        self.transient = transient


@dataclass
class Reply:
    text: str
    model: str
    cost: float = 0.0
    replayed: bool = False


class Model(Protocol):
    name: str

    def complete(self, messages: Messages, *, timeout: float) -> Reply: ...


def prompt_hash(messages: Messages) -> str:
    """The key of a prompt for record/replay: sha256 of its canonical JSON."""
    body = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class LiteLLMModel:
    """Any model litellm can reach (`openai/gpt-4o-mini`, `anthropic/...`, `ollama/...`)."""

    def __init__(self, model: str, *, temperature: float = 0.0, max_tokens: int = 800, **extra: Any):
        self.name = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra = extra  # e.g. mock_response= for litellm's own mock (tests)

    def complete(self, messages: Messages, *, timeout: float) -> Reply:
        if os.environ.get(NO_LIVE_ENV) and self.extra.get("mock_response") is None:
            blocked_live_calls.append(self.name)
            raise ModelError("live_forbidden", f"a live call to `{self.name}` was refused ({NO_LIVE_ENV} is set)")
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm  # lazily: importing it costs seconds
            from litellm import exceptions as llm_errors
        except ImportError as exc:
            raise ModelError("provider_error", "litellm is not installed: pip install 'rulebridge[llm]'") from exc

        try:
            resp = litellm.completion(model=self.name, messages=messages, timeout=timeout,
                                      temperature=self.temperature, max_tokens=self.max_tokens, **self.extra)
        except llm_errors.Timeout as exc:
            raise ModelError("timeout", str(exc), transient=True) from exc
        except llm_errors.RateLimitError as exc:
            raise ModelError("rate_limit", str(exc), transient=True) from exc
        except (llm_errors.APIConnectionError, llm_errors.ServiceUnavailableError,
                llm_errors.InternalServerError) as exc:
            raise ModelError("provider_error", str(exc), transient=True) from exc
        except Exception as exc:  # authentication, bad request, unknown provider: permanent
            raise ModelError("provider_error", f"{type(exc).__name__}: {exc}") from exc
        text = resp.choices[0].message.content or ""
        cost = float((getattr(resp, "_hidden_params", None) or {}).get("response_cost") or 0.0)
        return Reply(text, getattr(resp, "model", self.name) or self.name, cost)


class ResponseFile:
    """JSON Lines of `{"prompt_hash", "model", "response"}`: what record writes and replay reads."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] | None = None

    def answers(self) -> dict[str, dict[str, Any]]:
        if self._answers is None:
            out: dict[str, dict[str, Any]] = {}
            if self.path.exists():
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        rec = json.loads(line)
                        out[rec["prompt_hash"]] = rec
            self._answers = out
        return self._answers

    def add(self, key: str, model: str, response: str, note: str = "") -> None:
        with self._lock:
            rec = {"prompt_hash": key, "model": model, "response": response}
            if note:
                rec["note"] = note
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
            self.answers()[key] = rec


class ReplayModel:
    """Answers from a response file, by prompt hash; an unknown prompt is a `replay_miss`."""

    def __init__(self, file: ResponseFile):
        self.file = file
        self.name = f"replay:{file.path.name}"

    def complete(self, messages: Messages, *, timeout: float) -> Reply:
        rec = self.file.answers().get(prompt_hash(messages))
        if rec is None:
            raise ModelError("replay_miss", f"no recorded answer for this prompt in {self.file.path}")
        return Reply(rec["response"], rec.get("model", self.name), 0.0, replayed=True)


class RecordingModel:
    """A live model whose answers are also written to a response file for later replay."""

    def __init__(self, inner: Model, file: ResponseFile):
        self.inner = inner
        self.file = file
        self.name = inner.name

    def complete(self, messages: Messages, *, timeout: float) -> Reply:
        reply = self.inner.complete(messages, timeout=timeout)
        self.file.add(prompt_hash(messages), reply.model, reply.text)
        return reply


Script = str | BaseException | Callable[[Messages], str]


class ScriptedModel:
    """The test double: plays a list of answers (text, an exception to raise, or a function of the prompt).

    `delay_s` makes it slow (the engine's own deadline must cut it off). Every prompt it saw is
    kept in `prompts`, so tests can check what the model was told.
    """

    def __init__(self, script: Sequence[Script] | Callable[[Messages], str], *, delay_s: float = 0.0,
                 name: str = "scripted", cost: float = 0.0):
        self.script = script
        self.delay_s = delay_s
        self.name = name
        self.cost = cost
        self.prompts: list[Messages] = []
        self._i = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def complete(self, messages: Messages, *, timeout: float) -> Reply:
        with self._lock:
            self.prompts.append([dict(m) for m in messages])
            if callable(self.script):
                item: Script = self.script
            else:
                if self._i >= len(self.script):
                    raise ModelError("script_exhausted", f"the scripted model has no answer left (call {self._i + 1})")
                item = self.script[self._i]
                self._i += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(item, BaseException):
            raise item
        text = item(messages) if callable(item) else item
        return Reply(text, self.name, self.cost)
