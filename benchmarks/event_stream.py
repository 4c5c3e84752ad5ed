"""Events per second through the correlations, and RSS over N events with windows expiring.

Three correlations (a sequence, a count of 3, an absence), each keyed on one of 10,000 keys
with a 7-day window; events arrive every 60 s of event time on average, so about 10,000 events
lie in each window and every earlier one expires. Measures the correlator alone (parse, match,
expire, emit) — the decisions of the emitted cases are not taken here (see decide benchmarks).

    python benchmarks/event_stream.py --events 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.errors import DiagnosticSink
from engine.lang.stream import StreamCompiler
from engine.lang.types import Schema
from engine.match.correlate import Correlator

STREAM = """\
stream: bench.watch
events:
  vendor.bank_details_changed: {vendor: string}
  invoice.submitted: {vendor: string, amount: number}
  discount.requested: {customer: string, percent: number}
  agent.called: {agent: string, action: string}
correlations:
  - id: bank_change_then_invoice
    first: vendor.bank_details_changed
    then: invoice.submitted
    same: [vendor]
    within: 7d
    emits: {case: x, payload: {vendor: then.vendor}}
  - id: third_discount
    event: discount.requested
    count: 3
    same: [customer]
    within: 7d
    emits: {case: x, payload: {customer: event.customer}}
  - id: new_action
    event: agent.called
    same: [agent, action]
    within: 7d
    emits: {case: x, payload: {agent: event.agent}}
"""


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=10, help="report every N%% of the events")
    args = ap.parse_args()
    sink = DiagnosticSink()
    stream = StreamCompiler(Path("bench.yaml"), Schema(), sink, text=STREAM).compile()
    assert stream is not None and not sink.errors, sink.errors
    c = Correlator([stream], {})
    rng = random.Random(1)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sec = 0
    kinds = [("vendor.bank_details_changed", 1), ("invoice.submitted", 4), ("discount.requested", 3),
             ("agent.called", 4)]
    population = [k for k, w in kinds for _ in range(w)]
    emitted = 0
    step = max(1, args.events * args.every // 100)
    print(f"python {platform.python_version()} on {platform.machine()}, {args.events} events, {args.keys} keys")
    print(f"{'events':>10} {'events/s':>10} {'RSS MB':>8} {'kept':>8} {'emitted':>8}")
    t0 = last = time.perf_counter()
    for i in range(1, args.events + 1):
        sec += rng.randint(0, 120)
        kind = rng.choice(population)
        k = f"K{rng.randrange(args.keys)}"
        payload: dict[str, object]
        if kind == "vendor.bank_details_changed":
            payload = {"vendor": k}
        elif kind == "invoice.submitted":
            payload = {"vendor": k, "amount": 100.0}
        elif kind == "discount.requested":
            payload = {"customer": f"C{rng.randrange(args.keys // 10 or 1)}", "percent": 5}
        else:
            payload = {"agent": f"A{rng.randrange(50)}", "action": f"act{rng.randrange(200)}"}
        at = (base + dt.timedelta(seconds=sec)).isoformat()
        emitted += len(c.observe(c.parse({"type": kind, "id": f"e{i}", "at": at, "payload": payload})))
        if i % step == 0:
            now = time.perf_counter()
            print(f"{i:>10} {step / (now - last):>10.0f} {rss_mb():>8.1f} {c.retained():>8} {emitted:>8}",
                  flush=True)
            last = now
    total = time.perf_counter() - t0
    print(f"total: {args.events} events in {total:.1f} s = {args.events / total:.0f} events/s; "
          f"{emitted} cases emitted; {c.retained()} events kept at the end")


if __name__ == "__main__":
    main()
