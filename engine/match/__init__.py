"""Matching compiled rules against resolved facts: three matchers behind one interface.

`make_matcher(rs, kind)` builds one for a compiled ruleset; `match(env)` returns the ids of
every rule whose conditions all hold, in ruleset order (the hit policy, `engine.match.hit`,
picks the deciding ones after):

- `index` (the default, the fastest at every ruleset size measured in
  `benchmarks/RESULTS-headline.md`): a compiled discrimination index for single-case rules
  (`engine.match.index`): equality and range atoms indexed per path, candidate rules as
  bitsets in ruleset order, every other condition evaluated as a closure only for the
  candidates;
- `durable`: durable-rules' Rete networks (`engine.match.durable`) over the same rules, kept
  as a second implementation held to the same tests; durable-rules' own role is rules over
  event streams with state and time (`engine.match.correlate`);
- `reference`: the plain-Python evaluator (`engine.match.reference`), the specification
  the other two are held to by the differential tests, and the source of explanations.
"""

from __future__ import annotations

from typing import Any

from engine.lang.compiler import CompiledRuleset

from .reference import match_reference

MATCHERS = ("durable", "index", "reference")


class ReferenceMatcher:
    """The plain-Python evaluator behind the same interface as the durable-rules adapter."""

    name = "reference"

    def __init__(self, rs: CompiledRuleset):
        self.rs = rs

    def match(self, env: dict[str, Any]) -> list[str]:
        return match_reference(self.rs, env)


def make_matcher(rs: CompiledRuleset, kind: str = "index") -> Any:
    """A matcher for one compiled ruleset: `index` (the default), `durable` or `reference`."""
    if kind == "reference":
        return ReferenceMatcher(rs)
    if kind == "index":
        from .index import IndexMatcher

        return IndexMatcher(rs)
    if kind == "durable":
        from .durable import DurableMatcher

        return DurableMatcher(rs)
    raise ValueError(f"unknown matcher `{kind}`: expected one of {', '.join(MATCHERS)}")
