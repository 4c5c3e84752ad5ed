"""The facade: `Engine.open(workspace)`, then `decide(case)` and `explain(case)` many times."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.errors import LoadError
from engine.lang.compiler import CompiledRuleset
from engine.match import make_matcher
from engine.match.reference import RuleTrace, explain_rules
from engine.model import Case
from engine.pipeline import Decision, decide
from engine.workspace import Workspace, load_workspace


@dataclass
class Explanation:
    """A decision with a trace of every rule: why it matched, or the first condition that failed."""

    decision: Decision
    rules: list[RuleTrace]
    ruleset: CompiledRuleset

    def to_json(self) -> dict[str, Any]:
        d = self.decision.to_json(self.ruleset)
        d["explanation"] = [
            {"rule": t.id, "description": t.description, "priority": t.priority, "matched": t.matched,
             "conditions": [{"condition": c.text, "result": c.result, "values": c.values, "line": c.line}
                            for c in t.conditions],
             "failed": None if t.failed is None else {"condition": t.failed.text, "result": t.failed.result,
                                                      "values": t.failed.values, "line": t.failed.line}}
            for t in self.rules]
        return d


class Engine:
    """A loaded workspace ready to decide cases. Compile once, decide many times."""

    def __init__(self, ws: Workspace, *, matcher: str = "durable", clock: Callable[[], dt.date] | None = None,
                 new_id: Callable[[], str] | None = None):
        self.ws = ws
        self.matcher_kind = matcher
        self.clock = clock or dt.date.today
        self.new_id = new_id or (lambda: uuid.uuid4().hex)
        self._matchers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, workspace: str | Path = ".", *, matcher: str = "durable", backend: str | None = None,
             clock: Callable[[], dt.date] | None = None, new_id: Callable[[], str] | None = None) -> "Engine":
        """Load, check and compile a workspace; raises `LoadError` with every diagnostic if it has errors."""
        ws = load_workspace(workspace, backend=backend)
        if ws.errors:
            raise LoadError(ws.errors)
        return cls(ws, matcher=matcher, clock=clock, new_id=new_id)

    def matcher_for(self, rs: CompiledRuleset) -> Any:
        m = self._matchers.get(rs.name)
        if m is None:
            with self._lock:
                m = self._matchers.get(rs.name)
                if m is None:
                    m = self._matchers[rs.name] = make_matcher(rs, self.matcher_kind)
        return m

    def warm(self) -> None:
        """Build every ruleset's matcher now rather than on its first case."""
        for rs in self.ws.rulesets.values():
            self.matcher_for(rs)

    def _case(self, case: Case | dict[str, Any]) -> Case:
        return case if isinstance(case, Case) else Case.from_json(case)

    def decide(self, case: Case | dict[str, Any]) -> Decision:
        """Decide a case: `execute` with proposals, `deny`, `escalate` or `no_action`, with reasons."""
        return decide(self.ws, self._case(case), matcher_for=self.matcher_for, clock=self.clock,
                      new_id=self.new_id)

    def explain(self, case: Case | dict[str, Any]) -> Explanation:
        """Decide a case and trace every rule: why it matched or the first condition that failed."""
        decision = self.decide(case)
        rs = self.ws.rulesets[decision.ruleset]
        return Explanation(decision, explain_rules(rs, decision.env), rs)

    @property
    def rulesets(self) -> dict[str, CompiledRuleset]:
        return self.ws.rulesets
