"""The example workspace's rule corpus: it checks clean and every rule test beside the rules passes."""

from __future__ import annotations

from engine import Engine
from engine.ruletest import run_tests
from engine.workspace import load_workspace
from tests.conftest import ROOT


def test_workspace_checks_clean():
    ws = load_workspace(ROOT)
    assert list(ws.diagnostics) == []
    assert sum(len(r.rules) for r in ws.rulesets.values()) >= 30
    assert {r.case_type for r in ws.rulesets.values()} >= {"invoice.received", "discount.requested", "lead.created"}


def test_rule_tests_pass_with_coverage():
    report = run_tests(Engine.open(ROOT))
    assert [(r.name, r.problems) for r in report.failed] == []
    assert len(report.results) >= 30
    assert report.coverage >= 80
