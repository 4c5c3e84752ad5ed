"""The governed-path benchmark at smoke size, so `benchmarks/governed_path.py` cannot rot.

No timing assertions: the `--quick` run must finish, every `execute` decision must really have
run (outcome `done`, its marker in the graph), the audit chain must verify with its signatures,
and every number must be there. The agent-governance-toolkit part is checked when the toolkit
is reachable (in this interpreter or under $RULEBRIDGE_BENCH_AGT_PYTHON / /tmp/agtvenv) and must
otherwise be skipped cleanly, with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import governed_path as gp

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("governed-bench") / "quick.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "governed_path.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), p.stdout


def test_executions_really_happened(quick):
    res, _ = quick
    c = res["correctness"]
    assert c["outcomes"]["execute"] == c["execution"]["done"] == c["graph_markers"] > 0
    assert c["chain_ok"] and c["signatures"] == "checked"
    g = res["governed"]
    assert set(g["execution_outcomes"]) == {"done"}
    assert g["executed"]["n"] > 0 and g["not_executed"]["n"] > 0
    assert g["executed"]["n"] + g["not_executed"]["n"] == g["all"]["n"]
    assert g["all"]["n"] == g["rounds"] * (res["cases"] - res["args"]["warmup"])


def test_numbers_are_present(quick):
    res, _ = quick
    for loop in (res["rule_path"]["all"], res["governed"]["all"], res["governed"]["executed"]):
        assert loop["n"] > 0 and 0 < loop["p50"] <= loop["p99"]
    assert res["rule_path"]["all"]["per_s"] > 0 and res["governed"]["executed_per_s"] > 0
    b = res["breakdown"]
    ex = b["executed"]["stages"]
    for s in ("resolve", "match", "record", "record.audit", "execute", "execute.ledger", "execute.connector",
              "execute.audit", "total"):
        assert ex[s]["mean"] > 0, s
    assert b["executed"]["audit_txns_per_decision"] > b["not_executed"]["audit_txns_per_decision"] >= 1
    a = b["audit"]
    assert a["events"] > a["transactions"] > 0 and a["us_per_event_amortised"] > 0
    assert res["governed"]["events_per_decision"] > res["rule_path"]["events_per_decision"] > 0


def test_chain_verifies(quick):
    res, _ = quick
    v = res["verify"]
    assert v["ok"] and v["events"] > 0 and v["events_per_s"] > 0 and v["signatures"] == "checked"


def test_report_has_tables_and_verdicts(quick):
    res, stdout = quick
    assert "| loop |" in stdout and "| stage (µs, mean / p50) |" in stdout
    verdicts = [line for line in res["verdict"] if line.startswith(("MET", "NOT MET"))]
    assert len(verdicts) == 5
    assert res["machine"]["cores"] and res["machine"]["load"] is not None


def test_toolkit_part_runs_or_is_skipped_cleanly(quick):
    res, stdout = quick
    t = res["agt"]
    if "skipped" in t:
        assert "agent-governance-toolkit: SKIPPED" in stdout and t["skipped"]
        pytest.skip(f"agent-governance-toolkit not available: {t['skipped'][:200]}")
    assert t["actions"] > 0 and t["mismatches_vs_agents_yaml"] == 0
    for k in ("policy_only", "govern_memory_audit", "policy_file_audit"):
        assert t[k]["n"] > 0 and 0 < t[k]["p50"] <= t[k]["p99"]
    assert t["verify_memory"]["ok"] and t["verify_file"]["ok"] and t["verify_file"]["events"] > 0


def test_toolkit_policy_mirrors_agents_yaml():
    import yaml

    agents = yaml.safe_load((ROOT / "rules" / "agents.yaml").read_text(encoding="utf-8"))["agents"]
    assert set(gp.AGENT_POLICY) == set(agents)
    for agent, spec in agents.items():
        mine = gp.AGENT_POLICY[agent]
        if spec["actions"] == "*":
            assert mine == {"*": None}
            continue
        assert set(mine) == set(spec["actions"])
        for action, body in spec["actions"].items():
            limits = (body or {}).get("limits", [])
            assert (mine[action] is None) == (not limits), (agent, action)
            if limits:
                field, ceiling = mine[action]
                assert f"<= {ceiling}" in limits[0]["when"] and field in limits[0]["when"]
    assert "agents: [ap-assistant]" in gp.agt_policy_yaml("ap-assistant", gp.AGENT_POLICY["ap-assistant"])
    assert gp.agt_expected({"agent": "ap-assistant", "action": "approve_invoice", "facts": {"amount": 100001}}) is False
    assert gp.agt_expected({"agent": "sales-assistant", "action": "approve_invoice", "facts": {}}) is False
    assert gp.agt_expected({"agent": "ops-console", "action": "anything", "facts": {}}) is True
