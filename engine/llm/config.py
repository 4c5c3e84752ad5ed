"""LLM settings: `[llm]` in rulebridge.toml, each overridable by a `RULEBRIDGE_LLM_*` variable."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine.errors import Diagnostic

MODES = ("live", "replay", "record", "off")


@dataclass
class LLMConfig:
    """How the fallback reaches a model, and how much it may spend."""

    model: str = ""  # any litellm model string, e.g. "openai/gpt-4o-mini"; empty = no model
    mode: str = "live"  # live | replay (answers from `responses`) | record (live, and write them) | off
    responses: str = ""  # the record/replay file (JSON Lines keyed by prompt hash), relative to the workspace
    timeout_s: float = 30.0  # per model call, enforced by the engine whatever the provider does
    retries: int = 2  # transport retries of a transient error (timeout, rate limit, 5xx), with back-off
    backoff_s: float = 0.5  # first back-off; doubles each retry
    max_repairs: int = 2  # answers that fail the schema are sent back with the errors this many times
    guard_repairs: int = 1  # a proposal denied by a guard may be repaired this many times
    calls_per_minute: int = 60
    cost_per_day: float = 10.0  # USD, as litellm reports it
    confidence_threshold: float = 0.8  # below it, an accepted LLM proposal goes to review
    breaker_failures: int = 5  # consecutive failures that open the circuit breaker
    breaker_reset_s: float = 60.0
    max_in_flight: int = 16  # model calls running at once, a call that overran its deadline included
    temperature: float = 0.0
    max_tokens: int = 800
    max_answer_bytes: int = 65536  # a longer answer escalates (`llm_answer_too_large`): it is audited whole

    @property
    def enabled(self) -> bool:
        return self.mode != "off" and (self.mode == "replay" or bool(self.model))


ENV_PREFIX = "RULEBRIDGE_LLM_"
# Every answer of a case is recorded in its `llm` audit event (at most 4 MiB); one may take a quarter.
MAX_ANSWER_BYTES_LIMIT = 1024 * 1024


def load_llm_config(section: dict[str, Any], root: Path, env: dict[str, str] | None = None
                    ) -> tuple[LLMConfig, list[Diagnostic]]:
    """The `[llm]` section with its environment overrides (`RULEBRIDGE_LLM_<NAME>`, as
    `engine.config.Config.llm_environment` gives them); bad values become diagnostics."""
    env = {} if env is None else env
    cfg = LLMConfig()
    problems: list[Diagnostic] = []
    known = {f.name: f for f in fields(LLMConfig)}
    merged: dict[str, Any] = dict(section)
    for name in known:
        v = env.get(ENV_PREFIX + name.upper())
        if v is not None:
            merged[name] = v
    for key, value in merged.items():
        f = known.get(key)
        if f is None:
            from engine.errors import suggest_help

            help_, _ = suggest_help(key, known, "settings of [llm]")
            problems.append(Diagnostic("config", f"unknown setting `{key}` in [llm]", help=help_))
            continue
        default = getattr(cfg, key)
        try:
            conv = type(default)(value)
        except (TypeError, ValueError):
            problems.append(Diagnostic("config", f"[llm] {key} = {value!r} is not a {type(default).__name__}"))
            continue
        setattr(cfg, key, conv)
    if cfg.mode not in MODES:
        problems.append(Diagnostic("config", f"[llm] mode = {cfg.mode!r}; expected one of {', '.join(MODES)}"))
        cfg.mode = "off"
    if not 0 < cfg.max_answer_bytes <= MAX_ANSWER_BYTES_LIMIT:
        problems.append(Diagnostic("config", f"[llm] max_answer_bytes = {cfg.max_answer_bytes}; expected a whole "
                                   f"number from 1 to {MAX_ANSWER_BYTES_LIMIT}"))
        cfg.max_answer_bytes = LLMConfig.max_answer_bytes
    if cfg.responses and not Path(cfg.responses).is_absolute():
        cfg.responses = str(root / cfg.responses)
    return cfg, problems
