"""Rule tests: the `tests:` beside each ruleset, run through the real pipeline, with rule coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.case import Case
from engine.errors import CaseError
from engine.lang.checker import expand_iri
from engine.lang.semantics import to_json_value


@dataclass
class TestResult:
    """One rule test: passed or the differences found."""

    ruleset: str
    name: str
    file: str
    line: int
    passed: bool
    problems: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


@dataclass
class TestReport:
    """All results plus, per ruleset, the rules and guards no test exercised."""

    results: list[TestResult]
    covered: dict[str, set[str]]
    uncovered: dict[str, list[str]]

    @property
    def coverage(self) -> float:
        total = sum(len(c) + len(self.uncovered[k]) for k, c in self.covered.items())
        return 100.0 * sum(len(c) for c in self.covered.values()) / total if total else 100.0

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]


def _same(want: Any, got: Any, prefixes: dict[str, str]) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return expand_iri(want, prefixes) == got or want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)) and not isinstance(want, bool):
        return abs(want - got) < 1e-9
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_same(w, g, prefixes) for w, g in zip(want, got, strict=True))
    same: bool = want == got
    return same


def run_tests(engine: Any, *, rulesets: list[str] | None = None) -> TestReport:
    """Run every test of the selected rulesets (all by default) through the decision pipeline.

    The engine's own stages decide (graph, matcher, verification gate), but nothing is written:
    a rule test is not a decision, so it lands neither in the audit log nor in the review queue
    or the decision store of the workspace."""
    from engine.pipeline import decide
    results: list[TestResult] = []
    covered: dict[str, set[str]] = {}
    uncovered: dict[str, list[str]] = {}
    prefixes = engine.ws.prefixes
    for rs in engine.ws.rulesets.values():
        if rulesets and rs.name not in rulesets:
            continue
        hit: set[str] = set()
        for t in rs.tests:
            res = TestResult(rs.name, t.name, rs.file, t.span.line if t.span else 0, True)
            try:
                d = decide(engine.deciding, Case(rs.case_type, t.payload, as_of=t.as_of), llm=False)
            except CaseError as exc:
                res.passed = False
                res.problems.append("the case is invalid: " + "; ".join(x.message for x in exc.diagnostics))
                results.append(res)
                continue
            res.matched = d.matched
            hit.update(d.matched)
            hit.update(g.id for g in d.guards)
            exp = t.expect
            if "outcome" in exp and exp["outcome"] != d.outcome:
                res.problems.append(f"outcome: expected `{exp['outcome']}`, got `{d.outcome}` ({d.reason}: "
                                    f"{d.message})")
            if "rule" in exp:
                want_rules = exp["rule"] if isinstance(exp["rule"], list) else [exp["rule"]]
                if [r for r in want_rules if r] != d.deciding:
                    res.problems.append(f"deciding rule: expected {want_rules}, got {d.deciding}")
            if "action" in exp:
                got_actions = [p.action for p in d.proposals]
                if exp["action"] not in got_actions:
                    res.problems.append(f"action: expected `{exp['action']}`, got {got_actions or 'none'}")
            if "params" in exp and d.proposals:
                got = to_json_value(d.proposals[0].params)
                for k, v in (exp["params"] or {}).items():
                    if not _same(v, got.get(k), prefixes):
                        res.problems.append(f"param `{k}`: expected {v!r}, got {got.get(k)!r}")
            if "guard" in exp:
                ids = [g.id for g in d.guards]
                if exp["guard"] not in ids:
                    res.problems.append(f"guard: expected `{exp['guard']}` to fire, fired: {ids or 'none'}")
            if "reason" in exp and exp["reason"] not in (d.reason, d.message) and exp["reason"] not in d.message:
                res.problems.append(f"reason: expected `{exp['reason']}`, got `{d.reason}`: {d.message}")
            res.passed = not res.problems
            results.append(res)
        ids = [r.id for r in rs.rules] + [g.id for g in rs.guards]
        covered[rs.name] = {i for i in ids if i in hit}
        uncovered[rs.name] = [i for i in ids if i not in hit]
    return TestReport(results, covered, uncovered)
