"""Test support: compile rule files against the mini fixture workspace without touching it.

`mini_workspace()` loads tests/fixtures/mini once (ontology, actions, queries, graph);
`compile_ruleset()` compiles YAML text with the real compiler against the same context
that `engine.workspace.load_workspace` builds, and `engine_for()` wraps a compiled
ruleset in an `Engine` over the mini graph.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from pathlib import Path

from engine.api import Engine
from engine.errors import DiagnosticSink
from engine.kg.derived import DERIVED_IMPLS, derived_signatures
from engine.lang.compiler import CompileContext, CompiledRuleset, RulesetCompiler
from engine.workspace import Workspace, load_workspace

MINI = Path(__file__).parent / "fixtures" / "mini"
EX = "https://example.test/id/"
ONT = "https://example.test/ontology#"
CLOCK = dt.date(2026, 11, 1)  # the fixed engine clock: `today()` when a case has no `as_of`


@functools.lru_cache(maxsize=1)
def mini_workspace() -> Workspace:
    """The mini fixture workspace with its graph, loaded once per test process."""
    ws = load_workspace(MINI)
    assert ws.errors == [], ws.errors
    return ws


def mini_context(ws: Workspace | None = None) -> CompileContext:
    """The compile context exactly as `load_workspace` builds it for the mini workspace."""
    ws = ws or mini_workspace()
    return CompileContext(ws.schema, ws.actions, derived_signatures(ws.queries, ws.schema), DERIVED_IMPLS,
                          ws.prefixes)


def compile_ruleset(text: str | None, path: Path, *, ctx: CompileContext | None = None
                    ) -> tuple[CompiledRuleset | None, DiagnosticSink]:
    """Compile one rule file; with `text=None` it is read from `path` (so tables beside it are found)."""
    sink = DiagnosticSink()
    rs = RulesetCompiler(path, ctx or mini_context(), sink).compile(text=text)
    return rs, sink


def engine_for(rs: CompiledRuleset, matcher: str) -> Engine:
    """An engine over the mini graph that knows only `rs`, with a fixed clock."""
    ws = dataclasses.replace(mini_workspace(), rulesets={rs.name: rs}, by_case_type={rs.case_type: rs})
    return Engine(ws, matcher=matcher, clock=lambda: CLOCK)
