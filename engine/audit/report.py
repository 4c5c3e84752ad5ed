"""Reports over the audit log: exports (JSON Lines, CSV) and decision statistics.

Statistics are computed from the latest `decided` event of each decision, whose `data` carries `outcome`
(execute | deny | escalate | no_action), `source` (rule | llm | human | agent | none), `rule`
(the deciding rule id or null) and `ruleset` (see `engine/audit/trail.py`). The counting is
one SQL GROUP BY per question; only the folding of a few hundred groups happens here.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, TextIO

from sqlalchemy import func, select

from engine.canonical import canonical_json

from .canonical import AuditError
from .chain import AuditEvent

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ["seq", "id", "schema", "ts", "decision_id", "step", "agent", "data", "prev", "hash", "sig"]


def write_events(out: TextIO, events: Iterable[AuditEvent], fmt: str) -> int:
    """Write events to `out`; returns how many. Unknown format → `AuditError(audit_bad_format)`."""
    if fmt not in FORMATS:
        raise AuditError(f"unknown export format `{fmt}`; use jsonl or csv", code="audit_bad_format")
    n = 0
    if fmt == "jsonl":
        for e in events:
            out.write(canonical_json(e.to_json()))
            out.write("\n")
            n += 1
        return n
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        d = e.to_json()
        d["data"] = canonical_json(e.data)
        d["sig"] = e.sig or ""
        writer.writerow([d[k] for k in CSV_COLUMNS])
        n += 1
    return n


def read_events(lines: Iterable[str], fmt: str) -> list[AuditEvent]:
    """Parse an export back into events (for re-verification and round-trip checks)."""
    if fmt == "jsonl":
        return [AuditEvent(**json.loads(line)) for line in lines if line.strip()]
    if fmt == "csv":
        rows = csv.DictReader(lines)
        return [AuditEvent(int(r["seq"]), r["id"], int(r["schema"]), r["ts"], r["decision_id"], r["step"],
                           r["agent"], json.loads(r["data"]), r["prev"], r["hash"], r["sig"] or None)
                for r in rows]
    raise AuditError(f"unknown export format `{fmt}`; use jsonl or csv", code="audit_bad_format")


def decision_stats(log: Any, since: Any = None, until: Any = None) -> dict[str, Any]:
    """Counts over a time window: events by step, decisions by outcome, source, rule, ruleset, agent."""
    from .log import audit_events, utc_text

    ev = audit_events
    window = []
    if since is not None:
        window.append(ev.c.ts >= utc_text(since, what="since"))
    if until is not None:
        window.append(ev.c.ts < utc_text(until, what="until"))
    by_step = select(ev.c.step, func.count()).where(*window).group_by(ev.c.step)
    # The latest `decided` event of each decision counts (an applied approval appends a second one).
    keys = ("outcome", "source", "rule", "ruleset")
    latest = (select(*[log.json_field(k).label(k) for k in keys], ev.c.agent,
                     func.row_number().over(partition_by=ev.c.decision_id, order_by=ev.c.seq.desc()).label("rn"))
              .where(ev.c.step == "decided", *window).subquery())
    cols = [latest.c[k] for k in (*keys, "agent")]
    decided = select(*cols, func.count().label("n")).where(latest.c.rn == 1).group_by(*cols)
    with log._reader() as c:
        steps: dict[str, int] = dict(c.execute(by_step).all())
        groups = c.execute(decided).all()
    out: dict[str, Any] = {
        "since": None if since is None else utc_text(since), "until": None if until is None else utc_text(until),
        "events": sum(steps.values()), "by_step": dict(sorted(steps.items())),
        "decisions": 0, "by_outcome": {}, "by_source": {}, "by_rule": {}, "by_ruleset": {}, "by_agent": {},
    }
    tables: dict[str, defaultdict[str, defaultdict[str, int]]] = {
        k: defaultdict(lambda: defaultdict(int)) for k in ("by_source", "by_rule", "by_ruleset", "by_agent")}
    outcomes: defaultdict[str, int] = defaultdict(int)
    for outcome, source, rule, ruleset, agent, n in groups:
        outcome, source = outcome or "unknown", source or "unknown"
        out["decisions"] += n
        outcomes[outcome] += n
        tables["by_source"][source][outcome] += n
        tables["by_ruleset"][ruleset or "unknown"][outcome] += n
        tables["by_agent"][agent][outcome] += n
        if rule:
            tables["by_rule"][rule][outcome] += n
    out["by_outcome"] = dict(sorted(outcomes.items()))
    for name, table in tables.items():
        out[name] = {k: dict(sorted(v.items())) for k, v in sorted(table.items())}
    return out
