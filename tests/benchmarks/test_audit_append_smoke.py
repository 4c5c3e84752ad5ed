"""The audit benchmark at tiny size, so `benchmarks/audit_append.py` cannot rot.

No timing assertions: every mode must run, produce sane numbers, and leave a log that verifies."""

from __future__ import annotations

import json

import pytest

from benchmarks import audit_append as bench
from engine.audit import Masker
from engine.audit.trail import STEPS

pytestmark = pytest.mark.slow


def test_the_generated_decision_is_realistic_and_maskable():
    events = bench.decision_events(3)
    assert [step for _d, step, _a, _data in events] == list(STEPS[:4]) + ["verified", "decided", "reviewed",
                                                                          "executed"]
    facts = events[1][3]
    masked = Masker.load(bench.MASK_RULES).apply(facts)
    assert masked["facts"]["case.approver.email"].startswith("sha256:")
    assert all(t["o"].startswith("sha256:") for t in masked["provenance"] if t["p"].endswith("#email"))


def test_smoke_run(tmp_path, capsys):
    out = tmp_path / "r.json"
    results = bench.main(["--events", "48", "--modes", "NORMAL", "--sqlite-dir", str(tmp_path), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "append_many_x8" in printed and "verify (HMAC)" in printed
    (r,) = results
    assert r["backend"] == "sqlite NORMAL"
    for mode in ("append", "append_many_x8", "append_many_x8_mask"):
        m = r[mode]
        assert 0 < m["p50_us"] <= m["p99_us"] and m["events_per_s"] > 0
    assert r["verify"]["ok"] and r["verify"]["events"] > 48
    assert json.loads(out.read_text())["results"] == results
    assert [p for p in tmp_path.iterdir() if p.name != "r.json"] == []  # the temporary logs are removed


def test_cli_help_runs():
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0
