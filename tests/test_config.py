"""Configuration read in one place (`engine/config.py`): the file, its defaults and the
environment's overrides, and every reader asking the `Config` rather than the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.audit.settings import default_audit_url
from engine.config import ENVIRONMENT, Config, load_config
from engine.errors import DiagnosticSink
from engine.storage import state_url


def config(tmp_path: Path, toml: str = "", **env: str) -> Config:
    (tmp_path / "rulebridge.toml").write_text(toml, encoding="utf-8")
    return load_config(tmp_path, DiagnosticSink(), environ=env)


def test_a_section_is_defaults_then_the_file_then_the_environment(tmp_path):
    c = config(tmp_path, '[graph]\nbackend = "rdflib"\n[storage]\nurl = "sqlite:///from-file.db"\n')
    assert c.section("graph")["backend"] == "rdflib" and c.section("graph")["data"] == "knowledge_graph/data"
    c = config(tmp_path, '[graph]\nbackend = "rdflib"\n', RULEBRIDGE_GRAPH_BACKEND="sparql",
               RULEBRIDGE_GRAPH_QUERY_URL="http://q", RULEBRIDGE_STATE_URL="sqlite:///env.db")
    assert c.section("graph")["backend"] == "sparql" and c.section("graph")["query_url"] == "http://q"
    assert c.section("storage")["url"] == "sqlite:///env.db"


@pytest.mark.parametrize(("section", "key"), sorted(ENVIRONMENT))
def test_every_override_in_the_table_reaches_its_section(tmp_path, section, key):
    c = config(tmp_path, **{ENVIRONMENT[(section, key)]: "from-the-environment"})
    assert c.section(section)[key] == "from-the-environment"


def test_the_readers_ask_the_config_not_the_environment(tmp_path, monkeypatch):
    """With the process environment saying otherwise, what the `Config` says wins: the state
    database and the audit log's URL are read from it alone."""
    monkeypatch.setenv("RULEBRIDGE_STATE_URL", "sqlite:///process.db")
    monkeypatch.setenv("RULEBRIDGE_AUDIT_URL", "sqlite:///process-audit.db")
    c = config(tmp_path, RULEBRIDGE_STATE_URL="sqlite:///mine.db")
    assert state_url(tmp_path, c) == "sqlite:///mine.db"
    assert default_audit_url(tmp_path, c) == "sqlite:///mine.db"  # no audit URL in this config: the state DB
    c = config(tmp_path, RULEBRIDGE_AUDIT_URL="sqlite:///audit.db")
    assert default_audit_url(tmp_path, c) == "sqlite:///audit.db"


def test_llm_overrides_are_the_prefixed_variables(tmp_path):
    c = config(tmp_path, RULEBRIDGE_LLM_MODEL="openai/x", RULEBRIDGE_LLM_TIMEOUT_S="3", OTHER="y")
    assert c.llm_environment() == {"RULEBRIDGE_LLM_MODEL": "openai/x", "RULEBRIDGE_LLM_TIMEOUT_S": "3"}
