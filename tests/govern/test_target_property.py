"""A differential property of the gate over generated cases and proposals.

For every proposal the gate accepts on a case — whoever proposed it, naming the case's own
entities or others — two things must hold:

1. decided on its targets' own cases (the case with each field an action target binds to
   replaced by the entity the proposal names), the gate accepts it too;
2. no `deny` guard of the ruleset, evaluated here directly on the facts resolved for those
   target cases (not through the gate's own target logic), fires for it.

It runs on the shipped workspace (every target bound `case`: a proposal on another entity is
denied) and on a copy where every action allows `any` target (the gate must resolve the other
entity's facts and decide on those). Counts go to `$RULEBRIDGE_TARGETS_REPORT` (default
`<tmp>/rulebridge-targets.json`) and are printed with `pytest -s`.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.case import Case
from engine.demo import _instances, sample_cases
from engine.govern.verify import Accept, Deny
from engine.kg.resolver import Reads, resolve_params
from engine.lang.semantics import truth
from engine.pipeline import prepare
from engine.proposals import Proposal
from engine.workspace import load_workspace
from tests.brightwater import ROOT, engine, workspace

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("RULEBRIDGE_TARGETS_EXAMPLES", "150"))  # per ruleset and workspace
REPORT = Path(os.environ.get("RULEBRIDGE_TARGETS_REPORT", Path(tempfile.gettempdir()) / "rulebridge-targets.json"))
RULESETS = ["crm.discount_approval", "accounts_payable.payment_release", "accounts_payable.invoice_approval",
            "crm.lead_routing"]
STATS: dict[str, Any] = collections.defaultdict(collections.Counter)


def any_copy(tmp: Path) -> Path:
    """The workspace with `targets: {P: any}` on every action (P: its inferred target)."""
    for name in ("rules", "knowledge_graph"):
        shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    shutil.copy(ROOT / "rulebridge.toml", tmp / "rulebridge.toml")
    shipped = workspace()
    p = tmp / "rules/actions.yaml"
    text = p.read_text(encoding="utf-8")
    for name, spec in shipped.actions.actions.items():
        targets = ", ".join(f"{t}: any" for t in spec.targets or {})
        text, n = re.subn(rf"(\n  {name}:\n    description: [^\n]*\n)", rf"\1    targets: {{{targets}}}\n", text)
        assert n == 1, name
    p.write_text(text, encoding="utf-8")
    return tmp


class Setup:
    def __init__(self, ws: Any, label: str):
        self.ws, self.label = ws, label
        self.engine = engine(None, ws=ws)
        self.cases: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for c in sample_cases(ws, 400, seed=5):
            rs = ws.by_case_type[c["type"]]
            c = {**c, "agent": "ops-console"}  # every action in scope: the guards are what is tested
            c.pop("id", None)
            self.cases[rs.name].append(c)
        cache: dict[str, list[str]] = {}
        self.pools = {cls: _instances(ws, cls, cache)[:40] for cls in ("Invoice", "SalesOrder", "Lead", "Employee")}


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    copy = load_workspace(any_copy(tmp_path_factory.mktemp("any-targets")))
    assert not copy.errors, copy.errors
    assert all(mode == "any" for s in copy.actions.actions.values() for mode in (s.targets or {}).values())
    yield {"shipped": Setup(workspace(), "shipped"), "any": Setup(copy, "any")}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({k: dict(v) for k, v in STATS.items()}, indent=2, sort_keys=True), encoding="utf-8")
    print("\ntarget property: " + "; ".join(f"{k}: " + ", ".join(f"{n}={c}" for n, c in sorted(v.items()))
                                            for k, v in sorted(STATS.items())))


@st.composite
def proposal_for(draw, s: Setup, ruleset: str, case: dict[str, Any]) -> Proposal:
    rs = s.ws.rulesets[ruleset]
    action = draw(st.sampled_from(rs.actions))
    spec = s.ws.gate.catalog.actions[action]
    params: dict[str, Any] = {}
    for p in spec.params.values():
        k = p.type.kind
        if k == "ref":
            pool = s.pools.get(p.type.cls or "", [])
            own = [case["payload"][f] for f, t in rs.case_schema.fields
                   if t.kind == "ref" and t.cls == p.type.cls and case["payload"].get(f)]
            params[p.name] = draw(st.sampled_from(own * len(pool) + pool if own else pool))  # half the case's
        elif k == "number":
            params[p.name] = draw(st.sampled_from([0, 1, 3, 5, 8, 12, 20, 45, 99.5, 100, 450.25, 5000, 120000]))
        elif p.enum:
            params[p.name] = draw(st.sampled_from(list(p.enum)))
        elif p.required or draw(st.booleans()):
            params[p.name] = draw(st.sampled_from(["customer asked", "checked by the team"]))
    source = draw(st.sampled_from(["llm", "human", "rule"]))
    return Proposal(action, params, source, None, "generated", 0.95 if source == "llm" else None)


def target_case(s: Setup, ruleset: str, case: dict[str, Any], p: Proposal) -> dict[str, Any]:
    """The case about the entities the proposal changes: each bound field replaced."""
    rs = s.ws.rulesets[ruleset]
    payload = dict(case["payload"])
    for b in s.ws.gate.targets(rs, p.action):
        if b.field is not None and p.params.get(b.param) is not None:
            payload[b.field] = p.params[b.param]
    return {**case, "payload": payload}


def deny_guards_on(s: Setup, ruleset: str, case: dict[str, Any], p: Proposal) -> list[str]:
    """The deny guards that fire for `p` on the facts of `case`, evaluated directly."""
    ws = s.ws
    flow = prepare(s.engine.deciding, Case.from_json(case))
    rs, env = flow.rs, flow.env
    from engine.lang.conditions import params_type
    from engine.lang.payload import validate_payload

    values, problems = validate_payload(params_type(ws.gate.catalog.actions[p.action]), p.params, ws.prefixes,
                                        where="params")
    assert not problems, problems
    values = resolve_params(values, [rs.plan.get("params", {}), ws.gate.precondition_plan, ws.gate.agents_plan],
                            env["__graph__"] if "__graph__" in env else ws.graph.for_case(Reads()), Reads())
    genv = {**env, "action": p.action, "params": values}
    fired = []
    for g in rs.guards:
        if g.kind == "deny" and (not g.applies_to or p.action in g.applies_to):
            try:
                hit = truth(g.fn(genv))
            except Exception:  # noqa: BLE001 - a guard that errors denies
                hit = None
            if hit is not False:
                fired.append(g.id)
    return fired


def check(s: Setup, ruleset: str, case: dict[str, Any], p: Proposal) -> None:
    stats = STATS[f"{s.label}/{ruleset}"]
    verdict = s.engine.verify(case, p)
    own = target_case(s, ruleset, case, p) == case
    kind = "own" if own else "other"
    if isinstance(verdict, Deny):
        stats[f"{kind}_deny_{verdict.reasons[0].code}"] += 1
        return
    stats[f"{kind}_{'accept' if isinstance(verdict, Accept) else 'review'}"] += 1
    tcase = target_case(s, ruleset, case, p)
    again = s.engine.verify(tcase, p)
    assert type(again) is type(verdict), (case, tcase, p, verdict, again)
    fired = deny_guards_on(s, ruleset, tcase, p)
    assert fired == [], (case, tcase, p, fired)


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


@pytest.mark.parametrize("label", ["shipped", "any"])
@pytest.mark.parametrize("ruleset", RULESETS)
def test_what_the_gate_accepts_holds_on_the_targets_own_case(setups, label, ruleset):
    s = setups[label]
    assert s.cases[ruleset], ruleset

    @SETTINGS
    @given(st.data())
    def run(data):
        case = data.draw(st.sampled_from(s.cases[ruleset]), label="case")
        p = data.draw(proposal_for(s, ruleset, case), label="proposal")
        check(s, ruleset, case, p)

    run()
    stats = STATS[f"{label}/{ruleset}"]
    assert stats["own_accept"] + stats["own_review"] > 0, stats  # not vacuous: proposals do pass
    if label == "shipped":
        assert stats["other_accept"] == stats["other_review"] == 0, stats
        assert stats["other_deny_target_not_case"] > 0, stats
    else:
        assert stats["other_deny_target_not_case"] == 0, stats
