"""`rulebridge audit`: verify the chain, show a decision's trace, export events, count decisions.

Exit codes as everywhere in the CLI: 0 ok, 1 findings (a broken chain; a workspace file with
errors), 2 bad input (a malformed date or anchor, an unknown decision, no log at the URL).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.errors import Diagnostic, LoadError, render_json, render_text, shown

# The same codes as engine/cli/main.py (not imported: main imports this module to register it).
EXIT_OK, EXIT_FINDINGS, EXIT_INPUT = 0, 1, 2
_INPUT_CODES = {"audit_bad_time", "audit_not_found", "audit_bad_anchor", "audit_unknown_decision",
                "audit_bad_format", "audit_bad_key"}

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log: verify, show, export, stats.")
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    text = "text"
    json = "json"


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", help="The workspace folder (with rulebridge.toml).")
UrlOpt = typer.Option(None, "--url", help="The audit log's SQLAlchemy URL (default: RULEBRIDGE_AUDIT_URL, "
                      "[audit] url, else the workspace's state database).")
FormatOpt = typer.Option(Format.text, "--format", "-f", help="text for people, json for machines.")
SinceOpt = typer.Option(None, "--since", help="Only events at or after this ISO date/time (UTC unless zoned).")
UntilOpt = typer.Option(None, "--until", help="Only events before this ISO date/time (UTC unless zoned).")


def _fail(code: str, message: str, fmt: Format = Format.text, exit_code: int | None = None,
          help: str | None = None) -> None:
    diag = Diagnostic(code, message, help=help)
    if fmt == Format.json:
        typer.echo(render_json([diag]))
    else:
        err.print(render_text([diag]), markup=False)
    raise typer.Exit(exit_code if exit_code is not None else EXIT_INPUT if code in _INPUT_CODES else EXIT_FINDINGS)


def _open(workspace: Path, url: str | None, fmt: Format, *, corrupt: list[Any] | None = None) -> Any:
    """The log, read-only (a missing log is bad input, not an empty log), with the key from the env.

    With `corrupt`, a database file too damaged to open is not an error here: the `AuditError`
    (`db_corrupt`) is put in the list and None is returned (`verify` reports it as its finding)."""
    from engine.audit.canonical import AuditError
    from engine.audit.settings import read_audit_log

    try:
        return read_audit_log(workspace, url=url)
    except LoadError as exc:
        if fmt == Format.json:
            typer.echo(render_json(exc.diagnostics))
        else:
            err.print(render_text(exc.diagnostics), markup=False)
        raise typer.Exit(EXIT_FINDINGS) from None
    except AuditError as exc:
        if corrupt is not None and exc.code == "db_corrupt":
            corrupt.append(exc)
            return None
        _fail(exc.code, str(exc), fmt)


def _call(fmt: Format, fn: Any, *args: Any, **kw: Any) -> Any:
    from engine.audit.canonical import AuditError

    try:
        return fn(*args, **kw)
    except AuditError as exc:
        _fail(exc.code, str(exc), fmt)


def _anchor(text: str | None, fmt: Format) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    number = seq.isascii() and seq.isdigit() and len(seq) <= 18  # int() of it cannot fail
    hexdigest = len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    if not number or int(seq) < 1 or not hexdigest:
        _fail("audit_bad_anchor", f"--anchor `{shown(text)}` is not SEQ:HASH", fmt,
              help="use the seq and the 64-digit hash a previous `audit verify` printed, e.g. 1200:3fa9…")
    return int(seq), digest


@audit_app.command("verify")
def verify(workspace: Path = WorkspaceOpt, url: str | None = UrlOpt, fmt: Format = FormatOpt,
           limit: int | None = typer.Option(None, "--limit", min=1, help="Check only the first N events."),
           anchor: str | None = typer.Option(None, "--anchor", help="SEQ:HASH recorded earlier (e.g. the "
                                                "head a previous run printed): the event must still have it.")
           ) -> None:
    """Check the database file, walk the hash chain and name the first broken event (exit 1), or
    confirm it is valid."""
    from engine.audit.chain import VerifyReport

    anchored = _anchor(anchor, fmt)
    corrupt: list[Any] = []
    log = _open(workspace, url, fmt, corrupt=corrupt)
    if log is None:  # too damaged to open: the same finding as a failed integrity check
        report = VerifyReport(False, 0, reason="db_corrupt", message=str(corrupt[0]))
    else:
        with log:
            report = _call(fmt, log.verify, limit=limit, anchor=anchored)
    if fmt == Format.json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        scope = "" if report.complete else f" (the first {report.checked}; the tail was not checked)"
        out.print(f"[green]chain valid[/]: {report.checked} events{scope}")
        if report.head is not None and report.complete:
            out.print(f"  head: seq {report.head.seq} hash {report.head.hash} — keep it as an anchor "
                      f"(--anchor {report.head.seq}:{report.head.hash})", markup=False)
        out.print("  signatures: " + ("checked" if report.signatures == "checked" else
                                      "not checked (no RULEBRIDGE_AUDIT_HMAC_KEY)"), markup=False)
    elif report.reason == "db_corrupt":
        out.print("[red]log broken[/]: [bold]db_corrupt[/]")
        out.print(f"  {report.message}", markup=False)
        out.print("  the chain was not walked: restore the database from a backup (a SQLite file's readable "
                  "part can be salvaged with `sqlite3 FILE .recover`)", markup=False)
    else:
        where = f"event {report.first_broken_seq}" + (f" (`{report.first_broken_id}`)" if report.first_broken_id
                                                      else "")
        out.print(f"[red]chain broken[/] at {escape(where)}: [bold]{report.reason}[/]")
        out.print(f"  {report.message}", markup=False)
        if report.reason in ("head_mismatch", "head_bad_signature", "anchor_mismatch") \
                and report.first_broken_id is None:
            out.print(f"  the {report.checked} stored events form a valid chain; the tail is not what was written",
                      markup=False)
        else:
            out.print(f"  {report.checked} events before it are valid", markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_FINDINGS)


@audit_app.command("show")
def show(decision_id: str = typer.Argument(..., help="The decision id (as returned by decide)."),
         workspace: Path = WorkspaceOpt, url: str | None = UrlOpt, fmt: Format = FormatOpt) -> None:
    """The full trace of one decision: who decided, then every step with its time, agent and data."""
    with _open(workspace, url, fmt) as log:
        events = _call(fmt, log.trace, decision_id)
    if not events:
        _fail("audit_unknown_decision", f"no audit events for decision `{shown(decision_id)}`", fmt,
              help="decision ids are printed by `rulebridge decide`; `audit export` lists every event")
    if fmt == Format.json:
        typer.echo(json.dumps([e.to_json() for e in events], indent=2, ensure_ascii=False))
        return
    render_trace(out, events)


@audit_app.command("export")
def export(workspace: Path = WorkspaceOpt, url: str | None = UrlOpt,
           fmt: ExportFormat = typer.Option(ExportFormat.jsonl, "--format", "-f", help="jsonl or csv."),
           since: str | None = SinceOpt, until: str | None = UntilOpt,
           output: Path | None = typer.Option(None, "--output", "-o", help="A file (default: stdout).")) -> None:
    """Export events with their hashes and signatures, so they can be re-verified elsewhere."""
    from engine.audit.log import utc_text

    for what, value in (("since", since), ("until", until)):
        if value is not None:
            _call(Format.text, utc_text, value, what=f"--{what}")
    with _open(workspace, url, Format.text) as log:
        if output is None:
            _call(Format.text, log.export, sys.stdout, fmt.value, since, until)
            return
        # Written beside the target and renamed into place: an interrupted export leaves no half file.
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                n = _call(Format.text, log.export, f, fmt.value, since, until)
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    err.print(f"{n} events written to {output}", markup=False)


@audit_app.command("stats")
def stats(workspace: Path = WorkspaceOpt, url: str | None = UrlOpt, fmt: Format = FormatOpt,
          since: str | None = SinceOpt, until: str | None = UntilOpt) -> None:
    """Decisions by source and outcome, per rule, per ruleset and per agent; events by step."""
    with _open(workspace, url, fmt) as log:
        s = _call(fmt, log.stats, since, until)
    if fmt == Format.json:
        typer.echo(json.dumps(s, indent=2, ensure_ascii=False))
        return
    window = f"{s['since'] or 'the beginning'} → {s['until'] or 'now'}"
    out.print(f"[bold]{s['decisions']}[/] decisions, {s['events']} events ({escape(window)})")
    outcomes = ["execute", "deny", "escalate", "no_action"]
    outcomes += sorted(set(s["by_outcome"]) - set(outcomes))
    for key, title in (("by_source", "decided by"), ("by_ruleset", "ruleset"), ("by_rule", "rule"),
                       ("by_agent", "agent")):
        if not s[key]:
            continue
        t = Table(title=f"decisions by {key[3:]}")
        t.add_column(title)
        for o in outcomes:
            t.add_column(o, justify="right")
        t.add_column("total", justify="right")
        for name, row in s[key].items():
            t.add_row(escape(name), *(str(row.get(o, 0)) for o in outcomes), str(sum(row.values())))
        out.print(t)
    t = Table(title="events by step")
    t.add_column("step")
    t.add_column("events", justify="right")
    for step, n in s["by_step"].items():
        t.add_row(escape(step), str(n))
    out.print(t)


# -- the trace, for people ------------------------------------------------------------------------
def render_trace(console: Console, events: list[Any]) -> None:
    """A decision's trace for people: who decided, then each step (time, agent, key data)."""
    from engine.audit.lines import event_lines, who_text
    from engine.audit.trail import who_decided

    w = who_decided(events)
    ran = [e.data.get("outcome") for e in events if e.step == "executed"]
    console.print(f"decision [bold]{escape(events[0].decision_id)}[/]: [bold]{escape(str(w['outcome']))}[/], "
                  f"decided by {escape(who_text(w))}" + (f"; executed: {escape(str(ran[-1]))}" if ran else ""))
    for e in events:
        console.print(f"  {e.ts}  [bold]{e.step:<9}[/] {escape(e.agent)}  (seq {e.seq}, {e.id})")
        for line in event_lines(e.step, e.data):
            console.print(f"      {line}", markup=False)
    console.print(f"{len(events)} events; `rulebridge audit verify` checks that none was changed", markup=False)
