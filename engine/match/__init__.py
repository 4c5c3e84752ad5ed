"""Matching compiled rules against resolved facts: durable-rules in production, a reference evaluator."""

from __future__ import annotations

from typing import Any

from engine.lang.compiler import CompiledRuleset

from .reference import match_reference


class ReferenceMatcher:
    """The plain-Python evaluator behind the same interface as the durable-rules adapter."""

    name = "reference"

    def __init__(self, rs: CompiledRuleset):
        self.rs = rs

    def match(self, env: dict[str, Any]) -> list[str]:
        return match_reference(self.rs, env)


def make_matcher(rs: CompiledRuleset, kind: str = "durable") -> Any:
    """A matcher for one compiled ruleset: `durable` (production) or `reference`."""
    if kind == "reference":
        return ReferenceMatcher(rs)
    from .durable import DurableMatcher

    return DurableMatcher(rs)
