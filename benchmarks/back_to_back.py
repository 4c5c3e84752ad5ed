"""Run one benchmark on several commits, alternating, in the same session: before/after numbers
that were measured side by side, on the same machine load.

    python benchmarks/back_to_back.py --commits ecadc41,HEAD --bench governed --repeat 3 -- --rounds 3 --no-agt
    python benchmarks/back_to_back.py --commits ecadc41,HEAD --bench rule --repeat 3 -- --rules 200,2000 \
        --triples 100000 --seconds 2

Each commit is checked out once into a detached worktree under the temp folder and runs its own
copy of the benchmark (so each side measures itself the way it was written). The order of the
commits alternates from one repetition to the next, so a drift of the machine's speed during the
run falls on both. The median over the repetitions of each headline figure is printed as a
Markdown table; `--json` keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = {"governed": "governed_path.py", "rule": "rule_path.py"}


def worktree(ref: str) -> tuple[str, Path]:
    sha = subprocess.run(["git", "rev-parse", "--short=10", ref], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"rulebridge-b2b-{sha}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=REPO, check=True,
                       capture_output=True)
    return sha, path


def headline(bench: str, data: dict[str, Any]) -> dict[str, float]:
    """The figures a user calls: `Engine.decide` with its audit, and an executed decision."""
    out: dict[str, float] = {}
    if bench == "governed":
        out["decide+audit p50 µs (whole stream)"] = data["rule_path"]["all"]["p50"]
        out["decide+audit p99 µs"] = data["rule_path"]["all"]["p99"]
        out["executed decision p50 µs"] = data["governed"]["executed"]["p50"]
        out["executed decision p99 µs"] = data["governed"]["executed"]["p99"]
    else:
        for r in data["results"]:
            if "timings" not in r:
                continue
            where = f"{r['rules']} rules × {r['triples']:,}"
            t = r["timings"]
            out[f"{where}: decide p50 µs"] = t["decide"]["p50_us"]
            out[f"{where}: decide p99 µs"] = t["decide"]["p99_us"]
            out[f"{where}: stages only p50 µs"] = t["decide_no_io"]["p50_us"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", required=True, help="git refs, comma-separated (the first is the baseline)")
    ap.add_argument("--bench", choices=sorted(BENCH), required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after `--`: the benchmark's own arguments")
    ns = ap.parse_args()
    extra = [a for a in ns.args if a != "--"]
    refs = [worktree(r) for r in ns.commits.split(",")]
    runs: dict[str, list[dict[str, float]]] = {sha: [] for sha, _ in refs}
    raw: list[dict[str, Any]] = []
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    for rep in range(ns.repeat):
        for sha, path in (refs if rep % 2 == 0 else refs[::-1]):
            out = Path(tempfile.mkdtemp()) / "out.json"
            cmd = [sys.executable, str(path / "benchmarks" / BENCH[ns.bench]), *extra, "--json", str(out)]
            print(f"[{rep + 1}/{ns.repeat}] {sha}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            subprocess.run(cmd, cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
            data = json.loads(out.read_text(encoding="utf-8"))
            runs[sha].append(headline(ns.bench, data))
            raw.append({"commit": sha, "repetition": rep, "machine": data.get("machine"), "headline": runs[sha][-1]})
    keys = list(runs[refs[0][0]][0])
    base = refs[0][0]
    print(f"| figure (median of {ns.repeat}) | " + " | ".join(sha for sha, _ in refs) + " | change |")
    print("|---|" + "---|" * (len(refs) + 1))
    for k in keys:
        med = {sha: statistics.median(r[k] for r in runs[sha]) for sha, _ in refs}
        last = refs[-1][0]
        change = (med[last] - med[base]) / med[base] * 100 if med[base] else 0.0
        print(f"| {k} | " + " | ".join(f"{med[sha]:,.0f}" for sha, _ in refs) + f" | {change:+.1f}% |")
    if ns.json:
        ns.json.write_text(json.dumps({"commits": [s for s, _ in refs], "bench": ns.bench, "args": extra,
                                       "runs": raw}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
