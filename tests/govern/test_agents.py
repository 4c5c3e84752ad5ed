"""The agents file (`engine/govern/agents.py`): declared identities and the names they may have."""

from __future__ import annotations

import shutil

import pytest

from engine.govern.agents import MAX_NAME, name_problem
from engine.workspace import load_workspace
from tests.conftest import MINI


@pytest.mark.parametrize("name", ["ap-assistant", "a" * MAX_NAME, "Zoë Müller", "ops console"])
def test_names_an_identity_may_have(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name, why", [
    ("", "is empty"),
    ("a" * (MAX_NAME + 1), f"has 129 characters (at most {MAX_NAME})"),
    ("ap\x00assistant", "contains the control or format character U+0000"),
    ("ap\x85assistant", "contains the control or format character U+0085"),
    ("ap-assistant\u202e", "contains the control or format character U+202E"),
    ("\u2067ap-assistant", "contains the control or format character U+2067"),
    ("ap\u200dassistant", "contains the control or format character U+200D"),
    ("ap\u2029assistant", "contains the control or format character U+2029"),
], ids=["empty", "too-long", "nul", "c1", "bidi-override", "bidi-isolate", "zero-width",
        "separator"])
def test_names_no_identity_may_have(name, why):
    assert name_problem(name) == why


def test_a_declared_identity_with_a_hidden_character_is_a_schema_error(tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(MINI, ws)
    (ws / "rules" / "agents.yaml").write_text(
        'agents:\n  "ap-assistant\\u202e":\n    actions: "*"\n'
        'reviewers:\n  "ap\\x85lead": {rulesets: ["*"]}\n', encoding="utf-8")
    diags = [d for d in load_workspace(ws, load_graph=False).errors if d.code == "schema"]
    assert [(d.message, d.span.line) for d in diags] == [
        ("agent `ap-assistant\\u202e`: the name contains the control or format character U+202E",
         2),
        ("reviewer `ap\\x85lead`: the name contains the control or format character U+0085", 5)]
    assert diags[0].help.startswith("an identity's name has 1 to 128 characters")
