"""Regression tests for `engine/lang/compiler.py` found while writing the conformance suite.

(The compiler's ordinary behaviour is covered by the conformance cases in tests/cases/ and the
golden diagnostics in tests/lang/golden/; this file holds what those cannot express, such as
an action catalog other than the mini fixture's.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.lang.actions import ActionCatalog, ActionSpec, ParamSpec
from engine.lang.types import list_of, ref
from tests.rulesets import compile_ruleset, mini_context


def _ctx_with_party_action():
    ctx = mini_context()
    actions = dict(ctx.actions.actions)
    actions["flag_party"] = ActionSpec("flag_party", "flag a party", {
        "party": ParamSpec("party", ref("Party")),
        "parties": ParamSpec("parties", list_of(ref("Party")), required=False),
    })
    return dataclasses.replace(ctx, actions=ActionCatalog(actions))


def _compile(then: str, tmp_path: Path):
    text = ("ruleset: t\non: invoice.received\ncase: {invoice: Invoice}\nrules:\n"
            f"  - id: a\n    then: {then}\n")
    return compile_ruleset(text, tmp_path / "t.yaml", ctx=_ctx_with_party_action())


def test_a_parameter_of_the_exact_class_is_accepted(tmp_path):
    _rs, sink = _compile('{action: flag_party, params: {party: "ex:H1"}}', tmp_path)
    assert sink.items == []


def test_a_parameter_accepts_a_subclass(tmp_path):
    _rs, sink = _compile("{action: flag_party, params: {party: case.invoice.vendor}}", tmp_path)
    assert sink.items == []


def test_a_list_parameter_checks_its_element_type(tmp_path):
    _rs, sink = _compile('{action: flag_party, params: {party: "ex:H1", parties: case.invoice.lines}}', tmp_path)
    assert [d.code for d in sink.errors] == ["action_params"]


def test_a_parameter_of_an_unrelated_class_is_rejected(tmp_path):
    _rs, sink = _compile("{action: flag_party, params: {party: case.invoice}}", tmp_path)
    assert [(d.code, d.message) for d in sink.errors] == [
        ("action_params", "parameter `party` of `flag_party` expects Party, but this is Invoice")]
