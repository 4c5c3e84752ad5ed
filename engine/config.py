"""The configuration of a workspace, read in one place: `rulebridge.toml`, its defaults, and the
environment variables that override it.

    section      key          environment variable (wins over the file)
    [rules]      matcher      RULEBRIDGE_MATCHER      (durable, index or reference)
    [storage]    url          RULEBRIDGE_STATE_URL
    [audit]      url          RULEBRIDGE_AUDIT_URL
    [graph]      backend      RULEBRIDGE_GRAPH_BACKEND
    [graph]      query_url    RULEBRIDGE_GRAPH_QUERY_URL
    [graph]      update_url   RULEBRIDGE_GRAPH_UPDATE_URL
    [llm]        NAME         RULEBRIDGE_LLM_<NAME>   (every setting of `engine.llm.config.LLMConfig`)

Secrets are never in the file: the audit log's signing key comes only from the environment
(`RULEBRIDGE_AUDIT_HMAC_KEY`, read through `Config.environ` too). Every module that needs a
setting asks its `Config`; none reads `os.environ` for configuration itself. Process flags that
are no workspace setting are read where they act: `RULEBRIDGE_DEBUG` (the CLI shows tracebacks),
`RULEBRIDGE_FORBID_LIVE_LLM` (tests refuse live model calls), `LITELLM_LOCAL_MODEL_COST_MAP`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DiagnosticSink, Span
from engine.lang.source import read_source

DEFAULT_CONFIG: dict[str, Any] = {
    "workspace": {"name": "workspace"},
    "rules": {"dir": "rules", "actions": "rules/actions.yaml", "matcher": "index"},
    "graph": {"backend": "oxigraph", "data": "knowledge_graph/data", "ontology": "knowledge_graph/ontology",
              "shapes": "knowledge_graph/shapes", "queries": "knowledge_graph/queries", "store_path": ""},
    "prefixes": {},
    "agents": {"file": "rules/agents.yaml"},
    "llm": {},
    "review": {"expire_after_hours": 72},
    "storage": {"url": ""},
    "security": {"require_keys": False},
    "audit": {"url": "", "mask": "rules/audit.yaml", "synchronous": "NORMAL"},
}

# (section, key) -> the environment variable that overrides it
ENVIRONMENT: dict[tuple[str, str], str] = {
    ("rules", "matcher"): "RULEBRIDGE_MATCHER",
    ("storage", "url"): "RULEBRIDGE_STATE_URL",
    ("audit", "url"): "RULEBRIDGE_AUDIT_URL",
    ("graph", "backend"): "RULEBRIDGE_GRAPH_BACKEND",
    ("graph", "query_url"): "RULEBRIDGE_GRAPH_QUERY_URL",
    ("graph", "update_url"): "RULEBRIDGE_GRAPH_UPDATE_URL",
}
LLM_PREFIX = "RULEBRIDGE_LLM_"  # `RULEBRIDGE_LLM_MODEL` overrides `[llm] model`, and so on


@dataclass
class Config:
    """`rulebridge.toml`, with defaults for everything left out and the environment's overrides.

    `environ` is the process environment (read when a section is asked for, so a variable set
    later still counts); a test may give its own mapping."""

    root: Path
    data: dict[str, Any]
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)

    def section(self, name: str) -> dict[str, Any]:
        """A section: its defaults, what the file says, and the environment's overrides."""
        out: dict[str, Any] = {**DEFAULT_CONFIG.get(name, {}), **self.data.get(name, {})}
        for (section, key), var in ENVIRONMENT.items():
            if section == name and self.environ.get(var):
                out[key] = self.environ[var]
        return out

    def llm_environment(self) -> dict[str, str]:
        """The `RULEBRIDGE_LLM_*` overrides of `[llm]` (validated with the section by `load_llm_config`)."""
        return {k: v for k, v in self.environ.items() if k.startswith(LLM_PREFIX)}

    def path(self, section: str, key: str) -> Path:
        return self.root / str(self.section(section)[key])


def load_config(root: Path, sink: DiagnosticSink, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read `rulebridge.toml` (optional: defaults apply without it)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    f = root / "rulebridge.toml"
    data: dict[str, Any] = {}
    if f.exists():
        text, why = read_source(f)
        if text is None:
            sink.error("config", f"`rulebridge.toml` {why}", Span(str(f)))
            return Config(root, data, env)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            line, col = 0, 0
            if "(at line" in msg:
                tail = msg.rsplit("(at line", 1)[1]
                try:
                    line = int(tail.split(",")[0])
                    col = int(tail.split("column")[1].strip(" )"))
                except (ValueError, IndexError):
                    pass
            sink.error("config", f"invalid TOML: {msg.split(' (at line')[0].lower()}", Span(str(f), line, col))
    return Config(root, data, env)


__all__ = ["DEFAULT_CONFIG", "ENVIRONMENT", "LLM_PREFIX", "Config", "load_config"]
