"""The headline benchmark at smoke size, so `benchmarks/headline.py` cannot rot.

No timing assertions: the `--quick` run (20 rules, a 20k-triple graph generated into a
temporary cache) must finish, decide distinct cases audited (the audit log grew by ~5 events a
decision), execute decisions whose effect is in the graph, have several processes write one
state database whose chain verifies and holds every decision, and report every number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import headline as hl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    base = tmp_path_factory.mktemp("headline-bench")
    out = base / "quick.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "headline.py"), "--quick", "--cache",
                        str(base / "cache"), "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), p.stdout


def test_latency_decided_distinct_cases_with_their_audit(quick):
    res, _ = quick
    assert {r["matcher"] for r in res["latency"]} == {"durable", "index"}
    for r in res["latency"]:
        assert "error" not in r, r
        assert r["distinct_timed"] == 120 and r["invoices"] >= r["warmup"] + r["distinct_timed"]
        assert r["audited"]["n"] == r["stages"]["n"] == 60
        assert r["audited_repeated"]["n"] == 120
        assert sum(r["outcomes"].values()) == 60 and r["outcomes"].get("execute", 0) > 0
        assert r["audit_events_per_decision"] >= 2  # really audited: events of every decision in the log
        assert 0 < r["audited"]["p50"] <= r["audited"]["p99"]
        assert {"resolve", "match", "record (rest of the call)"} <= set(r["by_stage_p50"])
    # the same cases, the same rules: both matchers decide the same
    a, b = res["latency"]
    assert a["outcomes"] == b["outcomes"]


def test_executions_really_happened(quick):
    res, _ = quick
    for r in res["executed"]:
        assert "error" not in r, r
        assert r["execution"] == {"done": r["rows"]["executed"]["n"]} and r["graph_markers"] == r["execution"]["done"]
        assert r["chain_ok"] and r["chain_events"] > 0


def test_throughput_processes_share_one_verified_chain(quick):
    res, _ = quick
    runs = {r["procs"]: r for r in res["throughput"]}
    assert set(runs) == {1, 2}
    for procs, r in runs.items():
        assert "error" not in r, r
        assert len(r["per_worker"]) == procs and r["decisions"] > 0 and r["per_s"] > 0
        assert r["chain_ok"] and r["decisions_in_log"] == r["decisions_made"] > r["decisions"]
        assert r["errors"] == {}


def test_report_has_every_table(quick):
    res, stdout = quick
    text = hl.markdown(res)
    for heading in ("Latency, distinct cases", "Executed governed decisions", "Throughput: N processes"):
        assert heading in text and heading in stdout
    assert hl.stats([3.0, 1.0, 2.0]) == {"n": 3, "p50": 2.0, "p99": 3.0, "mean": 2.0, "max": 3.0}


def test_cli_help_runs():
    with pytest.raises(SystemExit) as exc:
        hl.main(["--help"])
    assert exc.value.code == 0
