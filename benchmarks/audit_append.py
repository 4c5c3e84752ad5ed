"""Benchmark of the audit log: append cost per event and verify throughput.

    python benchmarks/audit_append.py                         # SQLite (NORMAL and FULL), 16,000 events each
    python benchmarks/audit_append.py --pg postgresql+psycopg://user:pw@127.0.0.1:5432/db
    python benchmarks/audit_append.py --events 800 --json out.json

For each configuration a fresh log receives realistic events — the eight steps a governed
decision records (received, facts with provenance, matched, llm, verified, decided, reviewed,
executed; ~0.3–1.5 kB each) — and the script measures:

- `append`: one `AuditLog.append` per event (one transaction each)
- `append_many x8`: the eight events of one decision in one `append_many` (what the pipeline
  does); the latency of each call divided by 8 is the amortised cost per event
- `append_many x8 + mask`: the same with the workspace's masking rules applied
- `verify`: a full `AuditLog.verify()` of the log, HMAC signatures checked, in events/s

SQLite runs in WAL mode twice: `synchronous=NORMAL` (the default: durable across a crash of
the process; an OS crash or power cut may lose the last commits, atomically) and `FULL` (an
fsync of the WAL at every commit: durable across a power cut). Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `engine` importable from the checkout
    sys.path.insert(0, str(REPO))

from engine.audit import AuditLog, Masker  # noqa: E402

KEY = b"benchmark-hmac-key-0123456789abcdef"
# The workspace's masking rules (tests/audit/fixtures/audit.yaml until rules/audit.yaml exists).
MASK_RULES = next(p for p in (REPO / "rules" / "audit.yaml", REPO / "tests" / "audit" / "fixtures" / "audit.yaml")
                  if p.exists())
BW, BWD = "https://brightwater.example/ontology#", "https://brightwater.example/id/"


def decision_events(i: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The eight events of one decision, shaped as engine/audit/trail.py records them."""
    did, agent, inv = f"{i:032x}", "ap-assistant", f"{BWD}INV-{i}"
    provenance = [{"s": inv, "p": BW + p, "o": o, "g": ""} for p, o in (
        ("amount", str(400 + i % 900)), ("status", "received"), ("vendor", f"{BWD}V-{i % 300}"),
        ("purchase_order", f"{BWD}PO-{i % 700}"), ("currency", "USD"), ("invoice_date", "2026-10-20"))]
    provenance += [{"s": f"{BWD}EMP-{i % 60:03d}", "p": BW + "email", "o": f"emp{i % 60}@brightwater.example",
                    "g": ""}, {"s": f"{BWD}V-{i % 300}", "p": BW + "status", "o": "approved", "g": ""}]
    proposal = {"action": "approve_invoice", "params": {"invoice": inv, "approver": f"{BWD}EMP-{i % 60:03d}",
                                                        "note": "auto-approved: matched PO under 1,000"},
                "source": "rule", "rule": "ap.approve.small_matched"}
    return [
        (did, "received", agent, {"case": {"type": "invoice.received", "payload": {"invoice": inv, "amount": 420}},
                                  "ruleset": "accounts_payable.invoice_approval",
                                  "rule_revision": "accounts_payable.invoice_approval@70a15a72a4a8",
                                  "graph_revision": "33c78f2af6edf8f3", "as_of": "2026-11-01", "matcher": "durable"}),
        (did, "facts", agent, {"facts": {"case.invoice.amount": 420, "vendor.status": "approved",
                                         "po.open_amount": 1200.5, "case.approver.email": "emp@brightwater.example",
                                         "vendor_sanctioned_link": False}, "provenance": provenance,
                               "queries": [{"query": "duplicate_invoice", "bindings": {"invoice": inv},
                                            "result": False}]}),
        (did, "matched", agent, {"rules_matched": ["ap.approve.small_matched", "ap.review.new_vendor"],
                                 "rules_deciding": ["ap.approve.small_matched"], "hit_policy": "priority"}),
        (did, "llm", agent, {"model": None, "replayed": False, "attempts": [], "calls": 0}),
        (did, "verified", agent, {"proposals": [proposal], "checks": [], "guards": []}),
        (did, "decided", agent, {"outcome": "execute", "source": "rule", "reason": "rule", "message": "",
                                 "rule": "ap.approve.small_matched", "rules": ["ap.approve.small_matched"],
                                 "ruleset": "accounts_payable.invoice_approval", "proposals": [proposal],
                                 "review_id": None}),
        (did, "reviewed", "system", {"review_id": None, "verdict": "not_required"}),
        (did, "executed", agent, {"action": "approve_invoice", "status": "done", "connector": "erp-sql",
                                  "idempotency_key": secrets.token_hex(16), "result": {"rows": 1}}),
    ]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else 0.0


def _stats(per_event_us: list[float]) -> dict[str, float]:
    return {"p50_us": round(_pct(per_event_us, 0.5), 1), "p99_us": round(_pct(per_event_us, 0.99), 1),
            "mean_us": round(statistics.fmean(per_event_us), 1) if per_event_us else 0.0}


def _timed(calls: int, fn: Callable[[int], Any], per_call_events: int, warmup: int) -> dict[str, float]:
    for i in range(warmup):
        fn(-1 - i)
    gc.collect()
    times = []
    t_all = time.perf_counter()
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e6 / per_call_events)
    total = time.perf_counter() - t_all
    out = _stats(times)
    out["events_per_s"] = round(calls * per_call_events / total)
    return out


def bench_log(url: str, events: int, *, synchronous: str = "NORMAL") -> dict[str, Any]:
    """Append `events` events three ways into fresh logs at `url`, then verify the largest."""
    decisions = max(events // 8, 2)
    warm = min(50, decisions // 4 + 1)
    batches = [decision_events(i) for i in range(decisions + warm)]
    sqlite = url.startswith("sqlite")
    result: dict[str, Any] = {"backend": f"sqlite {synchronous}" if sqlite else "postgresql",
                              "synchronous": synchronous if sqlite else "n/a (synchronous_commit of the server)"}
    # one event per transaction: as many events as calls, spread over the eight steps
    with _fresh(url, synchronous) as log:
        result["append"] = _timed(decisions, lambda i: log.append(*batches[i % len(batches)][i % 8]), 1, warm)
    with _fresh(url, synchronous, masker=Masker.load(MASK_RULES)) as log:
        result["append_many_x8_mask"] = _timed(decisions, lambda i: log.append_many(batches[i]), 8, warm)
    with _fresh(url, synchronous) as log:
        result["append_many_x8"] = _timed(decisions, lambda i: log.append_many(batches[i]), 8, warm)
        n = log.head().count  # type: ignore[union-attr]
        t0 = time.perf_counter()
        report = log.verify()
        seconds = time.perf_counter() - t0
        result["verify"] = {"events": report.checked, "ok": report.ok, "seconds": round(seconds, 3),
                            "events_per_s": round(report.checked / seconds) if seconds else 0}
        assert report.ok and report.checked == n, report
    return result


class _fresh:
    """A new, empty, signing log (a new SQLite file, or a new PostgreSQL schema), removed afterwards."""

    def __init__(self, url: str, synchronous: str, masker: Masker | None = None):
        self.base, self.synchronous, self.masker = url, synchronous, masker
        self.schema: str | None = None
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> AuditLog:
        url = self.base
        if url.startswith("sqlite"):
            self.tmp = tempfile.TemporaryDirectory(prefix="rulebridge-audit-bench-", dir=_sqlite_dir(url))
            url = f"sqlite:///{self.tmp.name}/audit.db"
        else:
            from sqlalchemy import create_engine, text

            self.schema = f"bench_{secrets.token_hex(4)}"
            admin = create_engine(url)
            with admin.begin() as c:
                c.execute(text(f"CREATE SCHEMA {self.schema}"))
            admin.dispose()
            url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{self.schema}"
        self.log = AuditLog(url, hmac_key=KEY, masker=self.masker, synchronous=self.synchronous)
        return self.log

    def __exit__(self, *exc: Any) -> None:
        self.log.close()
        if self.tmp is not None:
            self.tmp.cleanup()
        if self.schema is not None:
            from sqlalchemy import create_engine, text

            admin = create_engine(self.base)
            with admin.begin() as c:
                c.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
            admin.dispose()


def _sqlite_dir(url: str) -> str | None:
    """`sqlite:///DIR` names the folder for the benchmark's files (default: the system temp dir)."""
    path = url[len("sqlite:///"):]
    return path or None


def render(results: list[dict[str, Any]]) -> str:
    lines = [f"{'backend':<28} {'mode':<22} {'p50 µs/ev':>10} {'p99 µs/ev':>10} {'mean':>8} {'events/s':>10}"]
    for r in results:
        name = r["backend"]
        for mode in ("append", "append_many_x8", "append_many_x8_mask"):
            m = r[mode]
            lines.append(f"{name:<28} {mode:<22} {m['p50_us']:>10} {m['p99_us']:>10} {m['mean_us']:>8} "
                         f"{m['events_per_s']:>10}")
        v = r["verify"]
        lines.append(f"{name:<28} {'verify (HMAC)':<22} {'':>10} {'':>10} {'':>8} {v['events_per_s']:>10}"
                     f"   ({v['events']} events in {v['seconds']} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=16_000, help="events per mode and configuration")
    ap.add_argument("--pg", default=os.environ.get("RULEBRIDGE_BENCH_PG_URL", ""),
                    help="a PostgreSQL URL to measure too (a temporary schema is created and dropped)")
    ap.add_argument("--sqlite-dir", default="", help="where the SQLite files go (default: the temp dir)")
    ap.add_argument("--modes", default="NORMAL,FULL", help="SQLite synchronous modes to measure")
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)
    results = []
    for mode in [m.strip().upper() for m in args.modes.split(",") if m.strip()]:
        results.append(bench_log(f"sqlite:///{args.sqlite_dir}", args.events, synchronous=mode))
    if args.pg:
        results.append(bench_log(args.pg, args.events))
    print(f"audit log append and verify — {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores, {args.events} events per mode")
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"events": args.events, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
