"""Benchmark of the governed rule path: decide + verify + execute + audit, on the embedded defaults.

    python benchmarks/governed_path.py --quick                  # smoke run, ~10 s
    python benchmarks/governed_path.py                          # 5 fresh graphs x the 240 demo cases
    python benchmarks/governed_path.py --rounds 10 --json out.json --profile prof.txt
    python benchmarks/governed_path.py --agt-python /tmp/agtvenv/bin/python   # the toolkit side

The repository's own workspace (Brightwater: in-memory Oxigraph graph, `kg` connector) with a
temporary SQLite state database (WAL, synchronous=NORMAL: review queue, decisions, execution
ledger and audit log in one file, as `Engine.open` does by default; deleted at the end) and an
HMAC signing key for the audit log (`--no-hmac` to leave events unsigned). Cases:
`engine.demo.sample_cases(ws, --cases)` over all four rulesets, as `rulebridge demo` sends them.

Correctness first: one pass over the stream with `execute=True` on a fresh graph must execute
every `execute` decision (`decision.execution["outcome"] == "done"`), leave the graph changed
(each executed action's marker is in the graph: `store.executed(key)`), and leave an audit chain
that verifies. Then, measured:

- `rule path`: `Engine.decide(case, llm=False, review=True, execute=False)` round-robin over the
  stream on one graph (nothing executes, so the graph does not change): resolve, match, verify,
  review queue for escalations, one audit transaction per decision. p50/p99 µs, decisions/s,
  by ruleset and outcome.
- `governed`: `decide(..., execute=True)`: an `execute` decision is recorded, re-verified
  against the graph and run through the `kg` connector (SPARQL Update) under the execution
  ledger, every step audited. Executing changes the graph, so every round opens a fresh engine
  (the workspace reloaded; the same state database) and decides each case of the stream once,
  in a rotated order; the first `--warmup` decisions of a round are not timed. Outcomes are
  counted: only decisions whose execution is `done` count as "executed".
- `breakdown`: one more round with timing wrappers on the engine's own calls (record, audit
  append, decision store, re-verification, ledger, connector, review queue); the stages of
  `decision.timings_us` (resolve, match, decide) for the rest. Wrappers are not in the timed
  loops above.
- `audit`: events and transactions per decision, append time per event amortised, and a full
  `AuditLog.verify()` of the resulting chain (HMAC checked), events/s.
- `agt`: Microsoft's agent-governance-toolkit on the SAME proposals (agent, action, params):
  its `PolicyEngine.evaluate` with an equivalent policy (the agent's allowed actions and the
  amount ceilings of `rules/agents.yaml`), plus its audit logging (the `govern()` wrapper with
  its in-memory Merkle log, and `AuditLog` with a `FileAuditSink`: hash-chained, HMAC-signed
  JSON lines). Run in this process when `agentmesh` imports, else as a subprocess under
  `--agt-python` (default: $RULEBRIDGE_BENCH_AGT_PYTHON, else /tmp/agtvenv/bin/python if it
  exists), else skipped with the reason. The worker is this file (`--agt-worker IN OUT`).

Percentiles: p50 = sorted[n/2], p99 = sorted[int(0.99 n)], as in the other benchmarks; GC on.
Results: benchmarks/RESULTS-governed_path.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `engine` importable from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.machine import describe, load  # noqa: E402

HMAC_KEY = "benchmark-hmac-key-0123456789abcdef"
BW = "https://brightwater.example/ontology#"
TARGET_P50_US, TARGET_P99_US, TARGET_EVENT_US = 500.0, 3000.0, 50.0
# The agents' scope and ceilings of rules/agents.yaml, for the toolkit's equivalent policy:
# action -> (the number the limit reads, its ceiling); None = no limit. "*" = every action.
AGENT_POLICY: dict[str, dict[str, Any]] = {
    "ops-console": {"*": None},
    "ap-assistant": {"approve_invoice": ("amount", 100000), "hold_invoice": None,
                     "release_payment": ("amount", 50000), "hold_payment": None},
    "sales-assistant": {"approve_discount": ("percent", 20), "assign_lead": None},
}
DEFAULT_AGT_PYTHON = "/tmp/agtvenv/bin/python"


# -- statistics ------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else 0.0


def stats(values: list[float], seconds: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(values), "p50": round(_pct(values, 0.5), 1), "p99": round(_pct(values, 0.99), 1),
                           "mean": round(statistics.fmean(values), 1) if values else 0.0}
    if seconds:
        out["per_s"] = round(len(values) / seconds)
    return out


def machine() -> dict[str, Any]:
    """CPU, cores, RAM, load, Python and package versions."""
    return describe(("durable_rules", "pyoxigraph", "SQLAlchemy", "tenacity", "pydantic", "agent-governance-toolkit",
                     "agent-governance-toolkit-core"))


# -- the engine side -------------------------------------------------------------------------------
def open_engine(state_dir: Path) -> Any:
    """The repository workspace, freshly loaded, on the benchmark's state database; opened fully
    (audit log, decision store, executor with its recovery, review queue) and warmed."""
    from engine.api import Engine

    e = Engine.open(REPO, state=f"sqlite:///{state_dir}/state.db")
    e.warm()
    _ = e.audit, e.decisions, e.executor, e.queue  # first use opens them: not part of a decision
    return e


def close_engine(e: Any) -> None:
    for obj in (e._audit, getattr(e._executor, "ledger", None)):
        if obj is not None and hasattr(obj, "close"):
            obj.close()
    for obj in (e._decisions, e._queue, e._identities):
        db = getattr(obj, "db", None) or getattr(obj, "engine", None)
        if db is not None and hasattr(db, "dispose"):
            db.dispose()


def executed_ok(d: Any) -> bool:
    return d.outcome == "execute" and bool(d.execution) and d.execution.get("outcome") == "done"


def correctness(state_dir: Path, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """One pass with execution on a fresh graph: every `execute` decision ran, its effect is in
    the graph, the chain verifies."""
    e = open_engine(state_dir)
    outcomes: Counter[str] = Counter()
    execution: Counter[str] = Counter()
    markers = 0
    for c in cases:
        d = e.decide(c, llm=False, review=True, execute=True)
        outcomes[d.outcome] += 1
        if d.outcome == "execute":
            execution[(d.execution or {}).get("outcome", "missing")] += 1
            for st in (d.execution or {}).get("steps", []):
                markers += e.ws.store.executed(st["key"]) is not None
    report = e.audit.verify()
    close_engine(e)
    out = {"decisions": len(cases), "outcomes": dict(outcomes), "execution": dict(execution),
           "graph_markers": markers, "chain_ok": report.ok, "chain_events": report.checked,
           "signatures": str(report.signatures)}
    assert execution and set(execution) == {"done"}, f"an execute decision did not run: {dict(execution)}"
    assert markers == execution["done"], (markers, execution)
    assert report.ok, report
    return out


def rule_path_loop(state_dir: Path, cases: list[dict[str, Any]], seconds: float, min_calls: int,
                   warmup: int) -> dict[str, Any]:
    """`decide(execute=False)` round-robin over the stream on one graph."""
    e = open_engine(state_dir)
    for c in cases[:warmup]:
        e.decide(c, llm=False, review=True, execute=False)
    gc.collect()
    times: list[float] = []
    by_rs: dict[str, list[float]] = defaultdict(list)
    by_outcome: dict[str, list[float]] = defaultdict(list)
    head0 = e.audit.head().count
    t_all = time.perf_counter()
    while True:
        for c in cases:
            t0 = time.perf_counter()
            d = e.decide(c, llm=False, review=True, execute=False)
            us = (time.perf_counter() - t0) * 1e6
            times.append(us)
            by_rs[d.ruleset].append(us)
            by_outcome[d.outcome].append(us)
        if time.perf_counter() - t_all >= seconds and len(times) >= min_calls:
            break
    total = time.perf_counter() - t_all
    events = e.audit.head().count - head0
    close_engine(e)
    return {"all": stats(times, total), "by_ruleset": {k: stats(v) for k, v in sorted(by_rs.items())},
            "by_outcome": {k: stats(v) for k, v in sorted(by_outcome.items())},
            "events_per_decision": round(events / len(times), 2)}


def governed_loop(state_dir: Path, cases: list[dict[str, Any]], rounds: int, warmup: int) -> dict[str, Any]:
    """`decide(execute=True)`, each case once per fresh graph, `rounds` graphs."""
    everything: list[float] = []
    executed: list[float] = []
    not_executed: list[float] = []
    by_rs: dict[str, list[float]] = defaultdict(list)
    by_outcome: dict[str, list[float]] = defaultdict(list)
    execution: Counter[str] = Counter()
    busy = 0.0
    events = 0
    for r in range(rounds):
        e = open_engine(state_dir)
        k = (r * 37) % len(cases)
        order = cases[k:] + cases[:k]
        head0 = e.audit.head().count
        gc.collect()
        for i, c in enumerate(order):
            t0 = time.perf_counter()
            d = e.decide(c, llm=False, review=True, execute=True)
            us = (time.perf_counter() - t0) * 1e6
            if d.outcome == "execute":
                execution[(d.execution or {}).get("outcome", "missing")] += 1
            if i < warmup:
                continue
            busy += us / 1e6
            everything.append(us)
            (executed if executed_ok(d) else not_executed).append(us)
            by_rs[d.ruleset].append(us)
            by_outcome["executed" if executed_ok(d) else d.outcome].append(us)
        events += e.audit.head().count - head0
        close_engine(e)
    n_all = rounds * len(cases)
    return {"rounds": rounds, "all": stats(everything, busy), "executed": stats(executed),
            "not_executed": stats(not_executed),
            "executed_per_s": round(len(executed) / sum(executed) * 1e6) if executed else 0,
            "by_ruleset": {k: stats(v) for k, v in sorted(by_rs.items())},
            "by_outcome": {k: stats(v) for k, v in sorted(by_outcome.items())},
            "execution_outcomes": dict(execution), "events_per_decision": round(events / n_all, 2)}


class Wrappers:
    """Timing wrappers on the engine's own calls; `acc` holds µs per name for the current decision."""

    def __init__(self, e: Any):
        self.e = e
        self.acc: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.in_execute = False
        self.active: set[str] = set()
        self.events = 0
        self.undo: list[tuple[Any, str]] = []
        self.class_undo: list[tuple[Any, str, Any]] = []
        import engine.pipeline as pipeline

        self._wrap(pipeline, "record", "record")  # the pipeline's RECORD stage
        self._wrap(pipeline, "act", "execute")  # its ACT stages
        self._wrap(pipeline, "verify_against", "execute.reverify")
        self._wrap(e.decisions, "record", "record.decision_store")
        self._wrap(e.decisions, "finish", "execute.decision_store")
        self._wrap(e.queue, "enqueue", "review_queue")
        for name in ("open_chain", "chain", "move_chain", "claim", "get", "finish", "move", "mark_audited",
                     "mark_chain_audited"):
            self._wrap(e.executor.ledger, name, "execute.ledger")
        for conn in e.executor.connectors.values():
            self._wrap(conn, "execute", "execute.connector")
        audit = e.audit
        original = audit.append_many
        me = self

        def append_many(items: Any) -> Any:
            items = list(items)
            t0 = time.perf_counter()
            try:
                return original(items)
            finally:
                key = "execute.audit" if me.in_execute else "record.audit"
                me.acc[key] += (time.perf_counter() - t0) * 1e6
                me.calls[key] += 1
                me.events += len(items)

        audit.append_many = append_many
        self.undo.append((audit, "append_many"))
        # Database commits, whatever store makes them (one SQLite file: every engine counts).
        from sqlalchemy import event

        self.commits = 0

        def on_commit(_conn: Any) -> None:
            me.commits += 1

        self.engines = []
        for db in {id(x.db): x.db for x in (e.audit, e.executor.ledger, e.decisions, e.queue)}.values():
            event.listen(db, "commit", on_commit)
            self.engines.append((db, on_commit))
        # The event bodies (serialised before the append) and the units of work's begin (write lock +
        # head read) and commit (head move + COMMIT), wherever they happen; their time is taken out of
        # the stage they happen in (an append that begins a unit, a ledger call that commits one).
        import engine.audit.trail as trail
        from engine.unit_of_work import Unit

        self.nested: dict[str, float] = defaultdict(float)
        self.rq_in_record = False
        for fn in ("decision_events", "decided_event"):
            unwrapped = getattr(trail, fn)
            self._wrap(trail, fn, "record.serialize")
            self.class_undo.append((trail, fn, unwrapped))
        for fn in ("_begin", "flush"):
            self._wrap_unit(Unit, fn)

    def _wrap_unit(self, cls: Any, attr: str) -> None:
        original = getattr(cls, attr)
        me = self

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                us = (time.perf_counter() - t0) * 1e6
                where = "execute" if "execute" in me.active else "record" if "record" in me.active else ""
                me.acc[f"{where}.commit" if where else "commit"] += us
                for name in me.active:
                    if name not in ("record", "execute"):
                        me.nested[name] += us

        setattr(cls, attr, wrapper)
        self.class_undo.append((cls, attr, original))

    def _wrap(self, obj: Any, attr: str, name: str) -> None:
        original = getattr(obj, attr)
        me = self

        def wrapper(*a: Any, **kw: Any) -> Any:
            if name in me.active:  # nested (a ledger call calling another): counted once, by the outer one
                return original(*a, **kw)
            if name == "review_queue" and "record" in me.active:
                me.rq_in_record = True
            me.active.add(name)
            outer = name == "execute"
            if outer:
                me.in_execute = True
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                me.acc[name] += (time.perf_counter() - t0) * 1e6
                me.calls[name] += 1
                me.active.discard(name)
                if outer:
                    me.in_execute = False

        setattr(obj, attr, wrapper)
        if type(obj).__name__ == "module":
            self.class_undo.append((obj, attr, original))
        else:
            self.undo.append((obj, attr))

    def reset(self) -> None:
        self.acc.clear()
        self.calls.clear()
        self.events = 0
        self.commits = 0
        self.nested.clear()

    def remove(self) -> None:
        from sqlalchemy import event

        for obj, attr in self.undo:
            if isinstance(obj, type) or type(obj).__name__ == "module":
                continue
            obj.__dict__.pop(attr, None)
        for obj, attr, original in self.class_undo:
            setattr(obj, attr, original)
        for db, fn in self.engines:
            event.remove(db, "commit", fn)


STAGES = ("resolve", "match", "decide", "review_queue", "record", "record.serialize", "record.decision_store",
          "record.audit", "record.commit", "record.other", "execute", "execute.reverify", "execute.ledger",
          "execute.connector", "execute.audit", "execute.decision_store", "execute.commit", "execute.other", "commit",
          "other")
LEAVES = ("review_queue", "record.serialize", "record.decision_store", "record.audit", "execute.reverify",
          "execute.ledger", "execute.connector", "execute.audit", "execute.decision_store")


def breakdown(state_dir: Path, cases: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """One fresh graph, each case once, with the wrappers: where a governed decision's time goes."""
    e = open_engine(state_dir)
    w = Wrappers(e)
    rows: dict[str, list[dict[str, float]]] = {"executed": [], "not_executed": []}
    audit_us: list[float] = []
    audit_events: list[int] = []
    audit_txns: list[int] = []
    commit_us: list[float] = []
    serialize_us: list[float] = []
    gc.collect()
    for i, c in enumerate(cases):
        w.reset()
        t0 = time.perf_counter()
        d = e.decide(c, llm=False, review=True, execute=True)
        total = (time.perf_counter() - t0) * 1e6
        if i < warmup:
            continue
        row = dict.fromkeys(STAGES, 0.0)
        t = d.timings_us  # the pipeline's DECIDE stages, in the rows this breakdown has always had
        row.update({"resolve": t.get("authenticate", 0.0) + t.get("resolve", 0.0), "match": t.get("match", 0.0),
                    "decide": t.get("consequence", 0.0) + t.get("fallback", 0.0) + t.get("verify", 0.0)})
        row.update({k: v for k, v in w.acc.items() if k in row})
        row["execute.reverify"] = w.acc.get("execute.reverify", 0.0)
        for k in LEAVES:  # a unit's begin or commit inside a call is in the commit rows, not in the call
            row[k] -= w.nested.get(k, 0.0)
        inner = sum(row[k] for k in ("execute.reverify", "execute.ledger", "execute.connector", "execute.audit",
                                     "execute.decision_store", "execute.commit"))
        row["execute.other"] = max(0.0, row["execute"] - inner) if row["execute"] else 0.0
        rq = row["review_queue"] if w.rq_in_record else 0.0  # one database: enqueued inside `_record`
        row["record.other"] = max(0.0, row["record"] - rq - sum(row[k] for k in (
            "record.serialize", "record.decision_store", "record.audit", "record.commit")))
        row["other"] = total - sum(row[k] for k in ("resolve", "match", "decide", "record", "execute", "commit")) - (
            0.0 if w.rq_in_record else row["review_queue"])
        row["total"] = total
        row["audit_txns"] = w.calls.get("record.audit", 0) + w.calls.get("execute.audit", 0)
        row["ledger_calls"] = w.calls.get("execute.ledger", 0)
        row["commits"] = w.commits
        rows["executed" if executed_ok(d) else "not_executed"].append(row)
        audit_us.append(row["record.audit"] + row["execute.audit"])
        serialize_us.append(row["record.serialize"])
        commit_us.append(row["record.commit"] + row["execute.commit"] + row["commit"])
        audit_events.append(w.events)
        audit_txns.append(row["audit_txns"])
    w.remove()
    close_engine(e)
    out: dict[str, Any] = {}
    for kind, rs in rows.items():
        if not rs:
            continue
        out[kind] = {"decisions": len(rs),
                     "stages": {s: {"mean": round(statistics.fmean(r[s] for r in rs), 1),
                                    "p50": round(_pct([r[s] for r in rs], 0.5), 1)}
                                for s in STAGES + ("total",)},
                     "audit_txns_per_decision": round(statistics.fmean(r["audit_txns"] for r in rs), 2),
                     "ledger_calls_per_decision": round(statistics.fmean(r["ledger_calls"] for r in rs), 2),
                     "commits_per_decision": round(statistics.fmean(r["commits"] for r in rs), 2)}
    ev = sum(audit_events)
    out["audit"] = {"events": ev, "transactions": sum(audit_txns), "append_us_total": round(sum(audit_us)),
                    "us_per_event_amortised": round(sum(audit_us) / ev, 1) if ev else 0.0,
                    # the units' begin + commit carry the ledger's, decisions' and review items' writes too:
                    # charging all of it to the audit log is an upper bound
                    "unit_begin_commit_us_total": round(sum(commit_us)),
                    "us_per_event_incl_commits": round((sum(audit_us) + sum(commit_us)) / ev, 1) if ev else 0.0,
                    # the decide-time event bodies, built before the append (`trail.decision_events`)
                    "serialize_us_per_event": round(sum(serialize_us) / ev, 1) if ev else 0.0,
                    "us_per_transaction": round(sum(audit_us) / sum(audit_txns), 1) if audit_txns else 0.0,
                    "events_per_decision": round(ev / len(audit_events), 2),
                    "transactions_per_decision": round(sum(audit_txns) / len(audit_txns), 2)}
    return out


def verify_chain(state_dir: Path) -> dict[str, Any]:
    from engine.api import Engine

    e = Engine.open(REPO, state=f"sqlite:///{state_dir}/state.db")
    t0 = time.perf_counter()
    report = e.audit.verify()
    seconds = time.perf_counter() - t0
    close_engine(e)
    assert report.ok, report
    return {"ok": report.ok, "events": report.checked, "signatures": str(report.signatures),
            "seconds": round(seconds, 3), "events_per_s": round(report.checked / seconds) if seconds else 0}


def profile(state_dir: Path, cases: list[dict[str, Any]], path: Path) -> None:
    import cProfile
    import io
    import pstats

    e = open_engine(state_dir)
    pr = cProfile.Profile()
    pr.enable()
    for c in cases:
        e.decide(c, llm=False, review=True, execute=True)
    pr.disable()
    close_engine(e)
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf)
    st.sort_stats("cumulative").print_stats(60)
    st.sort_stats("tottime").print_stats(40)
    path.write_text(buf.getvalue(), encoding="utf-8")


def agt_actions(state_dir: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The proposals of the stream's decisions (every outcome), as (agent, action, params), with the
    number each limit reads resolved from OUR graph (the toolkit has no graph: it is given it), and
    what our gate said of the agent's scope and limits."""
    e = open_engine(state_dir)
    out = []
    for c in cases:
        d = e.decide(c, llm=False, review=True, execute=False)
        for p in d.proposals:
            params = dict(p.params)
            facts: dict[str, Any] = {}
            for k, v in params.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    facts[k] = v
            if "invoice" in params and p.action == "approve_invoice":  # the limit reads params.invoice.amount
                amounts = e.ws.store.objects(str(params["invoice"]).replace("bwd:", "https://brightwater.example/id/"),
                                             BW + "amount")
                if amounts:
                    facts["amount"] = float(amounts[0])
            codes = [r.code for r in d.checks]
            out.append({"agent": d.agent, "action": p.action, "params": params, "facts": facts,
                        "ours": {"outcome": d.outcome, "scope_or_limit": [c for c in codes if "agent" in c
                                                                          or "limit" in c or "scope" in c]}})
    close_engine(e)
    return out


# -- the toolkit side (runs under the toolkit's interpreter; no `engine` import) ----------------------
def agt_policy_yaml(agent: str, scope: dict[str, Any]) -> str:
    lines = ["apiVersion: governance.toolkit/v1", f"name: {agent}-policy", f"agents: [{agent}]",
             "default_action: deny", "rules:"]
    if "*" in scope:
        lines += ["  - name: any-action", "    condition: \"action.type\"", "    action: allow"]
    else:
        allowed = ", ".join(f"'{a}'" for a in scope)
        lines += ["  - name: allowed-actions", f"    condition: \"action.type in [{allowed}]\"", "    action: allow"]
        for action, lim in scope.items():
            if lim:
                field, ceiling = lim
                lines += [f"  - name: {action}-ceiling",
                          f"    condition: \"action.type == '{action}' and params.{field} > {ceiling}\"",
                          "    action: deny", "    priority: 10"]
    return "\n".join(lines) + "\n"


def agt_expected(a: dict[str, Any]) -> bool:
    scope = AGENT_POLICY.get(a["agent"], {})
    if "*" in scope:
        return True
    if a["action"] not in scope:
        return False
    lim = scope[a["action"]]
    return lim is None or float(a["facts"].get(lim[0], 0)) <= lim[1]


def agt_worker(actions: list[dict[str, Any]], seconds: float, min_calls: int, tmp: Path) -> dict[str, Any]:
    """The toolkit's policy check and audit logging over the same actions."""
    from importlib import metadata

    from agentmesh.governance.audit import AuditLog
    from agentmesh.governance.audit_backends import FileAuditSink
    from agentmesh.governance.govern import govern
    from agentmesh.governance.policy import PolicyEngine

    engine = PolicyEngine(conflict_strategy="deny_overrides")
    for agent, scope in AGENT_POLICY.items():
        engine.load_yaml(agt_policy_yaml(agent, scope))
    governed = {agent: govern(lambda **kw: "done", policy=agt_policy_yaml(agent, scope), agent_id=agent,
                              on_deny=lambda decision: decision)
                for agent, scope in AGENT_POLICY.items()}
    ctxs = [{"action": {"type": a["action"]}, "params": dict(a["facts"])} for a in actions]
    # correctness: the same scope/limit verdict as rules/agents.yaml, for every action
    mismatches = sum(engine.evaluate(a["agent"], ctx).allowed != agt_expected(a)
                     for a, ctx in zip(actions, ctxs, strict=True))
    allowed = sum(engine.evaluate(a["agent"], ctx).allowed for a, ctx in zip(actions, ctxs, strict=True))

    def timed(fn: Callable[[int], Any]) -> dict[str, Any]:
        for i in range(min(50, len(actions))):
            fn(i)
        gc.collect()
        times = []
        t_all = time.perf_counter()
        while True:
            for i in range(len(actions)):
                t0 = time.perf_counter()
                fn(i)
                times.append((time.perf_counter() - t0) * 1e6)
            if time.perf_counter() - t_all >= seconds and len(times) >= min_calls:
                break
        return stats(times, time.perf_counter() - t_all)

    res: dict[str, Any] = {"actions": len(actions), "allowed": allowed, "mismatches_vs_agents_yaml": mismatches}
    res["policy_only"] = timed(lambda i: engine.evaluate(actions[i]["agent"], ctxs[i]))

    def via_govern(i: int) -> Any:
        a = actions[i]
        return governed[a["agent"]](action=a["action"], params=dict(a["facts"]))

    res["govern_memory_audit"] = timed(via_govern)
    mem_events = sum(len(g.audit_log._chain._entries) for g in governed.values())
    t0 = time.perf_counter()
    ok_mem = all(g.audit_log.verify_integrity()[0] for g in governed.values())
    res["verify_memory"] = {"ok": ok_mem, "events": mem_events, "seconds": round(time.perf_counter() - t0, 3),
                            "events_per_s": round(mem_events / max(time.perf_counter() - t0, 1e-9))}
    path = tmp / "agt-audit.jsonl"
    sink = FileAuditSink(path, secret_key=HMAC_KEY.encode())
    log = AuditLog(sink=sink)

    def with_file(i: int) -> Any:
        a = actions[i]
        decision = engine.evaluate(a["agent"], ctxs[i])
        log.log("policy_evaluation", a["agent"], a["action"], data={"params": a["params"], "rule":
                decision.matched_rule or "", "reason": decision.reason or ""}, outcome=decision.action,
                policy_decision=decision.action)
        return decision

    res["policy_file_audit"] = timed(with_file)
    file_events = sum(1 for _ in path.open(encoding="utf-8"))
    t0 = time.perf_counter()
    ok_file, _err = sink.verify_integrity()
    secs = time.perf_counter() - t0
    res["verify_file"] = {"ok": ok_file, "events": file_events, "seconds": round(secs, 3),
                          "events_per_s": round(file_events / secs) if secs else 0,
                          "bytes_per_event": round(path.stat().st_size / max(file_events, 1))}
    res["version"] = metadata.version("agent-governance-toolkit")
    try:
        res["core_version"] = metadata.version("agent-governance-toolkit-core")
    except metadata.PackageNotFoundError:
        res["core_version"] = "-"
    return res


def run_agt(actions: list[dict[str, Any]], seconds: float, min_calls: int, agt_python: str,
            tmp: Path) -> dict[str, Any]:
    """In this process when the toolkit imports here, else under `agt_python`, else skipped."""
    try:
        import agentmesh.governance.policy  # noqa: F401

        res = agt_worker(actions, seconds, min_calls, tmp)
        res["where"] = "in-process"
        return res
    except ImportError as exc:
        why_here = f"not importable here ({exc})"
    py = agt_python or os.environ.get("RULEBRIDGE_BENCH_AGT_PYTHON") or (
        DEFAULT_AGT_PYTHON if Path(DEFAULT_AGT_PYTHON).exists() else "")
    if not py or not Path(py).exists():
        return {"skipped": f"agent-governance-toolkit is {why_here} and no --agt-python interpreter was found "
                           f"(`python3 -m venv /tmp/agtvenv && /tmp/agtvenv/bin/pip install "
                           f"'agent-governance-toolkit[core]'`)"}
    inp, outp = tmp / "agt-in.json", tmp / "agt-out.json"
    inp.write_text(json.dumps({"actions": actions, "seconds": seconds, "min_calls": min_calls}), encoding="utf-8")
    p = subprocess.run([py, str(Path(__file__).resolve()), "--agt-worker", str(inp), str(outp)],
                       capture_output=True, text=True, timeout=900, check=False)
    if p.returncode != 0:
        return {"skipped": f"the toolkit worker under {py} failed: {p.stderr.strip()[-600:]}"}
    res = json.loads(outp.read_text(encoding="utf-8"))
    res["where"] = f"subprocess: {py} (its own venv; {why_here})"
    return res


# -- report ----------------------------------------------------------------------------------------
def verdicts(res: dict[str, Any]) -> list[str]:
    ex = res["governed"]["executed"]
    allg = res["governed"]["all"]
    ev = res["breakdown"]["audit"]["us_per_event_amortised"]
    ev_all = res["breakdown"]["audit"]["us_per_event_incl_commits"]

    def v(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    return [
        (f"{v(ex['p50'] <= TARGET_P50_US)}: governed rule path incl. execution + audit, executed decisions "
         f"p50 {ex['p50']:.0f} µs (target ≤ {TARGET_P50_US:.0f} µs)"),
        (f"{v(ex['p99'] <= TARGET_P99_US)}: governed rule path incl. execution + audit, executed decisions "
         f"p99 {ex['p99']:.0f} µs (target ≤ {TARGET_P99_US:.0f} µs)"),
        (f"{v(allg['p50'] <= TARGET_P50_US)}: governed rule path, whole stream (executed or not) "
         f"p50 {allg['p50']:.0f} µs (target ≤ {TARGET_P50_US:.0f} µs)"),
        (f"{v(allg['p99'] <= TARGET_P99_US)}: governed rule path, whole stream (executed or not) "
         f"p99 {allg['p99']:.0f} µs (target ≤ {TARGET_P99_US:.0f} µs)"),
        (f"{v(ev_all <= TARGET_EVENT_US)}: audit append amortised {ev_all} µs per event with every begin + commit "
         f"charged to it ({ev} µs the append alone) (target ≤ {TARGET_EVENT_US:.0f} µs)"),
    ]


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [f"governed rule path — {m['cpu']}, {m['cores']} cores, Python {m['python']}, load {m['load']}",
           f"stream: {res['cases']} demo cases; correctness: {res['correctness']}", "",
           "| loop | decisions | p50 µs | p99 µs | mean µs | decisions/s |", "|---|---:|---:|---:|---:|---:|"]

    def row(name: str, s: dict[str, Any], per_s: Any = None) -> None:
        out.append(f"| {name} | {s['n']} | {s['p50']:.0f} | {s['p99']:.0f} | {s['mean']:.0f} | "
                   f"{per_s if per_s is not None else s.get('per_s', '-')} |")

    row("rule path (execute=False), all", res["rule_path"]["all"])
    g = res["governed"]
    row("governed (execute=True), all", g["all"])
    row("governed, executed decisions", g["executed"], g["executed_per_s"])
    row("governed, not executed", g["not_executed"],
        round(1e6 / g["not_executed"]["mean"]) if g["not_executed"]["mean"] else "-")
    out += ["", "| ruleset | rule path p50 / p99 µs | governed p50 / p99 µs |", "|---|---:|---:|"]
    for rs, s in res["rule_path"]["by_ruleset"].items():
        gs = g["by_ruleset"].get(rs, {"p50": 0, "p99": 0})
        out.append(f"| {rs} | {s['p50']:.0f} / {s['p99']:.0f} | {gs['p50']:.0f} / {gs['p99']:.0f} |")
    out += ["", "| governed outcome | n | p50 µs | p99 µs |", "|---|---:|---:|---:|"]
    for k, s in g["by_outcome"].items():
        out.append(f"| {k} | {s['n']} | {s['p50']:.0f} | {s['p99']:.0f} |")
    out.append(f"execution outcomes: {g['execution_outcomes']}; audit events per decision: rule path "
               f"{res['rule_path']['events_per_decision']}, governed {g['events_per_decision']}")
    b = res["breakdown"]
    out += ["", "| stage (µs, mean / p50) | executed | not executed |", "|---|---:|---:|"]
    for s in STAGES + ("total",):
        cells = []
        for kind in ("executed", "not_executed"):
            st = b.get(kind, {}).get("stages", {}).get(s)
            cells.append(f"{st['mean']:.0f} / {st['p50']:.0f}" if st else "-")
        out.append(f"| {s} | {cells[0]} | {cells[1]} |")
    for kind in ("executed", "not_executed"):
        if kind in b:
            out.append(f"{kind}: database commits/decision {b[kind]['commits_per_decision']}, audit appends/decision "
                       f"{b[kind]['audit_txns_per_decision']}, ledger calls/decision "
                       f"{b[kind]['ledger_calls_per_decision']}")
    a = b["audit"]
    out.append(f"audit: {a['events']} events in {a['transactions']} appends, {a['us_per_event_amortised']} µs "
               f"per event amortised (append), {a['us_per_event_incl_commits']} µs with every unit begin + commit "
               f"charged to the audit log, + {a['serialize_us_per_event']} µs building the decide-time bodies, "
               f"{a['us_per_transaction']} µs per append, "
               f"{a['events_per_decision']} events / {a['transactions_per_decision']} transactions per decision")
    v = res["verify"]
    out.append(f"verify: {v['events']} events in {v['seconds']} s = {v['events_per_s']} events/s "
               f"(ok={v['ok']}, signatures {v['signatures']})")
    t = res["agt"]
    out.append("")
    if "skipped" in t:
        out.append(f"agent-governance-toolkit: SKIPPED — {t['skipped']}")
    else:
        out += [(f"agent-governance-toolkit {t['version']} (core {t['core_version']}), {t['where']}: "
                 f"{t['actions']} actions, {t['allowed']} allowed, {t['mismatches_vs_agents_yaml']} mismatches "
                 "with rules/agents.yaml"), "",
                "| toolkit variant | calls | p50 µs | p99 µs | mean µs | calls/s |", "|---|---:|---:|---:|---:|---:|"]
        for k in ("policy_only", "govern_memory_audit", "policy_file_audit"):
            s = t[k]
            out.append(f"| {k} | {s['n']} | {s['p50']:.1f} | {s['p99']:.1f} | {s['mean']:.1f} | {s['per_s']} |")
        for k in ("verify_memory", "verify_file"):
            s = t[k]
            out.append(f"{k}: {s['events']} events in {s['seconds']} s = {s['events_per_s']} events/s (ok={s['ok']})")
    out += [""] + res["verdict"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 graphs, short loops")
    ap.add_argument("--cases", type=int, default=240, help="demo cases in the stream")
    ap.add_argument("--rounds", type=int, default=5, help="fresh graphs for the governed loop")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum seconds per round-robin loop")
    ap.add_argument("--min-calls", type=int, default=1000, help="minimum calls per round-robin loop")
    ap.add_argument("--warmup", type=int, default=5, help="untimed decisions at the start of each graph")
    ap.add_argument("--no-hmac", action="store_true", help="leave audit events unsigned")
    ap.add_argument("--agt-python", default="", help="interpreter with agent-governance-toolkit[core] installed")
    ap.add_argument("--no-agt", action="store_true", help="skip the toolkit comparison")
    ap.add_argument("--profile", default="", help="write a cProfile of one governed round to this file")
    ap.add_argument("--json", default="", help="also write the results to this file")
    ap.add_argument("--agt-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.agt_worker:
        spec = json.loads(Path(args.agt_worker[0]).read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory(prefix="rulebridge-agt-") as tmp:
            res = agt_worker(spec["actions"], spec["seconds"], spec["min_calls"], Path(tmp))
        Path(args.agt_worker[1]).write_text(json.dumps(res), encoding="utf-8")
        return res
    if args.quick:
        args.rounds, args.seconds, args.min_calls = 2, 0.3, 240
    if not args.no_hmac:
        os.environ["RULEBRIDGE_AUDIT_HMAC_KEY"] = HMAC_KEY
    for var in ("RULEBRIDGE_AUDIT_URL", "RULEBRIDGE_STATE_URL"):
        os.environ.pop(var, None)  # the benchmark's temporary database, whatever the shell says
    from engine.demo import sample_cases

    tmp = Path(tempfile.mkdtemp(prefix="rulebridge-governed-bench-"))
    try:
        state = tmp / "state"
        probe = open_engine(state)
        cases = sample_cases(probe.ws, args.cases)
        close_engine(probe)
        res: dict[str, Any] = {"machine": machine(), "cases": len(cases), "args": vars(args)}
        t_start = time.perf_counter()
        res["correctness"] = correctness(state, cases)
        res["rule_path"] = rule_path_loop(state, cases, args.seconds, args.min_calls, args.warmup)
        res["governed"] = governed_loop(state, cases, args.rounds, args.warmup)
        res["breakdown"] = breakdown(state, cases, args.warmup)
        res["verify"] = verify_chain(state)
        if args.profile:
            profile(state, cases, Path(args.profile))
        if args.no_agt:
            res["agt"] = {"skipped": "--no-agt"}
        else:
            res["agt"] = run_agt(agt_actions(state, cases), args.seconds, args.min_calls, args.agt_python, tmp)
        res["seconds"] = round(time.perf_counter() - t_start, 1)
        res["machine"]["load_after"] = load()
        res["verdict"] = verdicts(res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
