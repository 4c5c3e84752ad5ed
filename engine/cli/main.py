"""`rulebridge`: check, test, decide, explain, demo — each a thin layer over the facade.

Exit codes are mapped here and only here: 0 success (a deny or an escalation is a normal
result), 1 findings (diagnostics with errors, failed tests, coverage too low), 2 bad input
(a malformed case file, an unknown case type). What a command does not handle itself — a damaged
state database, a full disk, a bug — is reported by the command group (`engine.cli.failures`):
one coded line, never a traceback.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.failures import EXIT_FINDINGS, EXIT_INPUT, GuardedGroup, run
from engine.errors import (
    AuthError,
    CaseError,
    Diagnostic,
    LoadError,
    Span,
    render_json,
    render_text,
    shown,
)

if TYPE_CHECKING:
    from engine.api import Engine

EXIT_OK = 0  # EXIT_FINDINGS (1) and EXIT_INPUT (2) come with the failure report

app = typer.Typer(cls=GuardedGroup, add_completion=False, no_args_is_help=True,
                  help="rulebridge — a governed decision engine: rules over a knowledge graph decide.")
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    text = "text"
    json = "json"


WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", help="The workspace folder (with rulebridge.toml).")
FormatOpt = typer.Option(Format.text, "--format", "-f", help="text for people, json for machines.")


def _fail_diagnostics(diags: list[Diagnostic], fmt: Format, code: int) -> NoReturn:
    if fmt == Format.json:
        out.print(render_json(diags), markup=False)
    else:
        err.print(render_text(diags), markup=False)
    raise typer.Exit(code)


def _open_engine(workspace: Path, fmt: Format, **kw: Any) -> Engine:
    from engine.api import Engine

    try:
        return Engine.open(workspace, **kw)
    except LoadError as exc:
        _fail_diagnostics(exc.diagnostics, fmt, EXIT_FINDINGS)


def _unreadable(exc: Exception) -> str | None:
    """Why a JSON text (a file, an option) could not be read, or None for another error."""
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, OSError):
        return f"cannot be read: {(exc.strerror or str(exc)).lower()}"
    if isinstance(exc, UnicodeDecodeError):
        return f"is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
    if isinstance(exc, json.JSONDecodeError):
        return f"is not valid JSON: {exc.msg.lower()}"
    if isinstance(exc, RecursionError):
        return "is not valid JSON here: its values are nested too deeply to read"
    if isinstance(exc, ValueError):  # an integer of more digits than Python converts (4,300)
        return f"is not valid JSON here: {shown(str(exc), 120).lower()}"
    return None


JSON_ERRORS = (OSError, ValueError, RecursionError)  # what `_unreadable` explains


def _read_case(path: Path, fmt: Format) -> dict[str, Any]:
    def bad(message: str, span: Span | None = None) -> NoReturn:
        _fail_diagnostics([Diagnostic("case_invalid", message, span)], fmt, EXIT_INPUT)

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        bad(f"no such case file `{path}`")
    except json.JSONDecodeError as exc:
        bad(f"the case file {_unreadable(exc)}", Span(str(path), exc.lineno, exc.colno))
    except JSON_ERRORS as exc:
        bad(f"the case file `{path}` {_unreadable(exc)}")
    if not isinstance(data, dict):
        bad("a case must be a JSON object with `type` and `payload`")
    case: dict[str, Any] = data
    return case


@app.command()
def check(path: Path = typer.Argument(Path("."), help="The workspace folder."),
          fmt: Format = FormatOpt,
          deny_warnings: bool = typer.Option(False, "--deny-warnings", help="Treat warnings as errors."),
          shacl: bool = typer.Option(True, "--shacl/--no-shacl", help="Validate the graph data with SHACL.")) -> None:
    """Load and check rules, decision tables, the ontology and the graph."""
    from engine.workspace import load_workspace, validate_shapes

    ws = load_workspace(path)
    diags = list(ws.diagnostics)
    if shacl and ws.store is not None:
        diags += validate_shapes(ws)
    errors = [d for d in diags if d.severity.value == "error" or deny_warnings]
    if fmt == Format.json:
        out.print(render_json(diags), markup=False)
    elif diags:
        err.print(render_text(diags), markup=False)
    if errors:
        raise typer.Exit(EXIT_FINDINGS)
    if fmt == Format.text:
        n_rules = sum(len(r.rules) for r in ws.rulesets.values())
        n_guards = sum(len(r.guards) for r in ws.rulesets.values())
        out.print(f"ok: {len(ws.rulesets)} rulesets, {n_rules} rules, {n_guards} guards, "
                  f"{len(ws.actions.actions)} actions, {len(ws.queries)} queries, "
                  f"{len(ws.store) if ws.store is not None else 0} triples (graph revision "
                  f"{ws.store.revision if ws.store is not None else '-'})")


@app.command("test")
def test_cmd(path: Path = typer.Argument(Path("."), help="The workspace folder."),
             min_coverage: float = typer.Option(0.0, "--min-coverage", help="Fail below this rule coverage (%)."),
             fmt: Format = FormatOpt,
             ruleset: list[str] | None = typer.Option(None, "--ruleset", "-r", help="Only these rulesets.")) -> None:
    """Run the tests beside the rules and report which rules no test exercises."""
    from engine.ruletest import run_tests

    engine = _open_engine(path, fmt)
    report = run_tests(engine, rulesets=ruleset)
    if fmt == Format.json:
        out.print(json.dumps({
            "passed": len(report.results) - len(report.failed), "failed": len(report.failed),
            "coverage": round(report.coverage, 1),
            "results": [r.__dict__ for r in report.results],
            "uncovered": report.uncovered}, indent=2), markup=False)
    else:
        for r in report.results:
            mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
            out.print(f"{mark} {r.ruleset} :: {r.name}")
            for p in r.problems:
                out.print(f"     {Path(r.file).name}:{r.line}: {p}", markup=False)
        table = Table(title="rule coverage")
        table.add_column("ruleset")
        table.add_column("covered", justify="right")
        table.add_column("not exercised by any test")
        for name in sorted(report.covered):
            total = len(report.covered[name]) + len(report.uncovered[name])
            table.add_row(name, f"{len(report.covered[name])}/{total}", ", ".join(report.uncovered[name]) or "-")
        out.print(table)
        out.print(f"{len(report.results) - len(report.failed)} passed, {len(report.failed)} failed; "
                  f"coverage {report.coverage:.1f}%")
    if report.failed:
        raise typer.Exit(EXIT_FINDINGS)
    if report.coverage < min_coverage:
        err.print(f"error[coverage]: rule coverage {report.coverage:.1f}% is below --min-coverage {min_coverage}%",
                  markup=False)  # (rich would take `[coverage]` for a style and drop it)
        raise typer.Exit(EXIT_FINDINGS)


def _decide(case_file: Path, workspace: Path, fmt: Format, explain: bool, key: str | None,
            execute: bool = False) -> None:
    from engine.act.execute import ExecutionError

    engine = _open_engine(workspace, fmt)
    data = _read_case(case_file, fmt)
    from engine.cli.render import render_decision, render_explanation

    try:
        if explain:
            explanation = engine.explain(data, key=key)
        else:
            result = engine.decide(data, key=key, execute=execute)
    except (CaseError, AuthError) as exc:
        _fail_diagnostics(exc.diagnostics, fmt, EXIT_INPUT)
    except ExecutionError as exc:
        _fail_diagnostics(exc.diagnostics, fmt, EXIT_FINDINGS)
    if explain:
        if fmt == Format.json:
            out.print(json.dumps(explanation.to_json(), indent=2, default=str), markup=False)
        else:
            render_explanation(out, explanation)
    else:
        rs = engine.ws.rulesets[result.ruleset]
        if fmt == Format.json:
            out.print(json.dumps(result.to_json(rs), indent=2, default=str), markup=False)
        else:
            render_decision(out, result, rs)
        if result.execution is not None:
            _note_if_forgotten(engine, result.graph_revision)
            if result.execution.get("outcome") != "done":
                raise typer.Exit(EXIT_FINDINGS)  # asked to act, and it did not: refused, failed or for review


def _note_if_forgotten(engine: Any, revision_before: str) -> None:
    """Say so when this command changed the in-memory graph, whose changes end with the command."""
    store = engine.ws.store
    if store.backend == "oxigraph" and not store.on_disk and store.revision != revision_before:
        err.print("note: the change was made to the in-memory graph of this command and is gone when it exits "
                  "(the ledger keeps that it ran); use `backend = \"oxigraph-disk\"` or `sparql` in "
                  "rulebridge.toml for a graph that keeps it", markup=False)


AgentKeyOpt = typer.Option(None, "--key", envvar="RULEBRIDGE_AGENT_KEY", show_envvar=True,
                           help="The asking agent's key (rbk_...); proves its identity.")


@app.command()
def decide(case_file: Path = typer.Argument(..., help="A case as JSON: {type, payload}."),
           workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt, key: str | None = AgentKeyOpt,
           execute: bool = typer.Option(False, "--execute", help="Run the accepted actions now, exactly once, "
                                        "through their connectors (the governed path).")) -> None:
    """Decide one case (and with --execute, act on it)."""
    _decide(case_file, workspace, fmt, explain=False, key=key, execute=execute)


@app.command()
def observe(events_file: Path = typer.Argument(..., help="Events as JSON Lines: {type, at, id?, payload} each."),
            workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt, key: str | None = AgentKeyOpt) -> None:
    """Feed events, in the order of their time, to the correlations of the stream files; decide
    every case they emit. A line that is no event is reported and skipped (exit 2 at the end)."""
    from engine.cli.render import render_decision

    engine = _open_engine(workspace, fmt)
    refused: list[Diagnostic] = []
    n_events = n_cases = 0
    try:
        lines = events_file.open(encoding="utf-8")
    except (OSError, ValueError) as exc:
        _fail_diagnostics([Diagnostic("event_invalid", f"the events file `{events_file}` {_unreadable(exc)}")],
                          fmt, EXIT_INPUT)
    with lines:
        for lineno, line in enumerate(_lines(lines, events_file, refused), 1):
            if not line.strip():
                continue
            where = Span(str(events_file), lineno, 1)
            try:
                data = json.loads(line)
                decisions = engine.observe(data, key=key)
            except json.JSONDecodeError as exc:
                refused.append(Diagnostic("event_invalid", f"the line {_unreadable(exc)}",
                                          Span(str(events_file), lineno, exc.colno)))
                continue
            except (CaseError, AuthError) as exc:
                refused += [Diagnostic(d.code, d.message, where, help=d.help) for d in exc.diagnostics]
                continue
            n_events += 1
            for d in decisions:
                n_cases += 1
                rs = engine.ws.rulesets[d.ruleset]
                cause = d.case.cause or {}
                if fmt == Format.json:
                    out.print(json.dumps({"line": lineno, "observed": cause, "decision": d.to_json(rs)},
                                         default=str), markup=False)
                else:
                    ids = ", ".join(e["id"] for e in cause.get("events", []))
                    out.print(f"line {lineno}: correlation {cause.get('correlation')} ({ids})", markup=False)
                    render_decision(out, d, rs)
    if fmt == Format.text:
        out.print(f"{n_events} events observed, {n_cases} cases emitted and decided, {len(refused)} lines refused")
    if refused:
        if fmt == Format.json:
            err.print(render_json(refused), markup=False)
        else:
            err.print(render_text(refused), markup=False)
        raise typer.Exit(EXIT_INPUT)


def _lines(f: Any, path: Path, refused: list[Diagnostic]) -> Any:
    """The lines of a text file; one that is not UTF-8 ends it, reported."""
    try:
        yield from f
    except UnicodeDecodeError as exc:
        refused.append(Diagnostic("event_invalid", f"the events file `{path}` {_unreadable(exc)}"))


@app.command("execute")
def execute_cmd(ident: str = typer.Argument(..., help="A decision id, or an approved review item (R-...)."),
                workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt, key: str | None = AgentKeyOpt) -> None:
    """Run a decision's accepted actions (or an approved review item's) exactly once.

    The chain is verified again against the graph as it is now; running it again shows the
    recorded outcome and runs nothing twice. Exit 0 when done, 1 when refused or failed."""
    from engine.act.decision_store import DecisionNotFound
    from engine.act.execute import ExecutionError
    from engine.govern.review import ReviewError

    engine = _open_engine(workspace, fmt)
    assert engine.ws.store is not None  # an engine is opened with its graph
    revision_before = engine.ws.store.revision
    try:
        res = engine.execute(ident, key=key)
    except (DecisionNotFound, ReviewError, AuthError) as exc:
        _fail_diagnostics(exc.diagnostics, fmt, EXIT_INPUT)
    except ExecutionError as exc:
        _fail_diagnostics(exc.diagnostics, fmt, EXIT_FINDINGS)
    if fmt == Format.json:
        out.print(json.dumps(res.to_json(), indent=2, default=str), markup=False)
    else:
        from engine.cli.render import render_execution

        render_execution(out, res.to_json())
    _note_if_forgotten(engine, revision_before)
    if not res.executed:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def explain(case_file: Path = typer.Argument(..., help="A case as JSON: {type, payload}."),
            workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt, key: str | None = AgentKeyOpt) -> None:
    """Decide one case and show why each rule matched or not."""
    _decide(case_file, workspace, fmt, explain=True, key=key)


DEMO_RESPONSES = Path("examples/llm/demo_responses.jsonl")


@app.command()
def demo(workspace: Path = WorkspaceOpt,
         cases: Path | None = typer.Option(None, "--cases", help="A JSON Lines file of cases "
                                              "(default: examples/demo_cases.jsonl, else sampled from the graph)."),
         count: int = typer.Option(240, "--count", "-n", help="How many cases to sample when no file is used."),
         responses: Path | None = typer.Option(None, "--responses", help="The recorded LLM answers to replay "
                                                  "when no live model is configured "
                                                  f"(default: {DEMO_RESPONSES})."),
         fmt: Format = FormatOpt) -> None:
    """Run a stream of sample cases through the engine and summarise the decisions.

    Cases no rule decides go to the LLM: a live model when `[llm] model` is configured, else
    answers replayed from a response file shipped in the repository. Escalations land in the
    review queue (`rulebridge review list`)."""
    from rich.progress import Progress

    from engine.config import load_config
    from engine.demo import load_cases, run_demo, sample_cases
    from engine.errors import DiagnosticSink
    from engine.llm.config import LLMConfig, load_llm_config

    t_open = time.perf_counter()
    config = load_config(workspace.resolve(), DiagnosticSink())
    cfg, _ = load_llm_config(config.section("llm"), workspace.resolve(), config.llm_environment())
    live = cfg.enabled and cfg.mode in ("live", "record")
    replay_file = None
    if not live:
        replay_file = (responses or (workspace / DEMO_RESPONSES)).resolve()
        cfg = LLMConfig(**{**cfg.__dict__, "mode": "replay", "responses": str(replay_file)})
    engine = _open_engine(workspace, fmt, llm=cfg)
    engine.warm()
    open_s = time.perf_counter() - t_open
    default_file = engine.ws.root / "examples" / "demo_cases.jsonl"
    source = cases or (default_file if default_file.exists() else None)
    try:
        stream = list(load_cases(source)) if source else sample_cases(engine.ws, count)
    except (FileNotFoundError, *JSON_ERRORS) as exc:
        why = f"the cases file `{source}` {_unreadable(exc)}"
        _fail_diagnostics([Diagnostic("case_invalid", why)], fmt, EXIT_INPUT)
    with Progress(console=err, transient=True, disable=fmt == Format.json) as progress:
        task = progress.add_task("deciding", total=len(stream))
        result = run_demo(engine, stream, advance=lambda: progress.advance(task))
    llm_desc = (f"live model `{cfg.model}`" if live else
                f"answers replayed from {replay_file} — recorded for this demo, not a live model")
    summary = {**result.to_json(), "llm": llm_desc, "open_s": round(open_s, 3),
               "source": str(source) if source else "sampled"}
    if fmt == Format.json:
        out.print(json.dumps(summary, indent=2), markup=False)
        return
    table = Table(title=f"rulebridge demo — {result.total['cases']} cases on the embedded defaults "
                        "(no server, no API key)")
    heads = {"cases": "cases", "rule": "decided by rule", "llm": "decided by LLM", "review": "escalated to review",
             "deny": "denied", "no_action": "no action", "reached_llm": "reached the LLM"}
    table.add_column("ruleset")
    for c in heads.values():
        table.add_column(c, justify="right")
    for name in sorted(result.rows):
        table.add_row(name, *(str(result.rows[name][k]) for k in heads))
    table.add_row("[bold]total[/]", *(f"[bold]{result.total[k]}[/]" for k in heads))
    out.print(table)
    out.print(f"LLM: {llm_desc}", markup=False)
    out.print(f"LLM calls {result.llm_calls} (schema repairs {result.schema_repairs}, guard repairs "
              f"{result.guard_repairs}); {result.share_reaching_llm:.0%} of cases reached the LLM — only those no rule "
              "decided.")
    mean = statistics.fmean(result.times_us) if result.times_us else 0
    out.print(f"time per case: p50 {result.percentile_us(0.5):.0f} µs, p99 {result.percentile_us(0.99):.0f} µs, "
              f"mean {mean:.0f} µs (workspace opened and compiled in {open_s:.2f} s; graph revision "
              f"{result.revision_decided})")
    out.print(f"{summary['review_pending']} escalation(s) wait in the review queue: rulebridge review list")
    parts = ", ".join(f"{n} {k}" for k, n in sorted(result.executed.items())) or "none"
    where = "the SPARQL endpoint" if engine.ws.store is not None and engine.ws.store.backend == "sparql" \
        else "the embedded graph"
    out.print(f"executed the {result.accepted} accepted decisions against {where}, each exactly once "
              f"after re-verification: {parts} ({result.execute_s:.2f} s; graph revision now {result.revision_after})",
              markup=False)
    if result.refused_because:  # the stream names some entities twice: the second decision sees the first's change
        top = sorted(result.refused_because.items(), key=lambda kv: (-kv[1], kv[0]))
        out.print("refused at re-verification, the graph having changed since the decision: "
                  + "; ".join(f"{n}× {why}" for why, n in top[:4]) + ("; ..." if len(top) > 4 else ""), markup=False)
    audit_report = result.audit
    if audit_report.ok:
        out.print(f"[green]audit chain valid[/]: {audit_report.checked} events, head {audit_report.head.seq}:"
                  f"{audit_report.head.hash[:16]}… (rulebridge audit verify | show DECISION | stats)")
    else:
        out.print(f"[red]audit chain BROKEN[/] at event {audit_report.first_broken_seq}: {audit_report.reason}")
        raise typer.Exit(EXIT_FINDINGS)
    if result.total["invalid"]:
        out.print(f"[yellow]{result.total['invalid']} case(s) were invalid[/]")


review_app = typer.Typer(no_args_is_help=True, help="The review queue: escalations waiting for a person.")
app.add_typer(review_app, name="review")
ReviewerOpt = typer.Option(None, "--reviewer", envvar="RULEBRIDGE_REVIEWER",
                           help="Who decides (a reviewer declared in rules/agents.yaml; recorded).")
ReviewerKeyOpt = typer.Option(None, "--key", envvar="RULEBRIDGE_REVIEWER_KEY", show_envvar=True,
                              help="The reviewer's key (rbk_...); proves who decides.")
_REVIEW_INPUT_CODES = {"review_not_found", "review_incomplete", "review_needs_action", "review_hash_mismatch",
                       "review_hash_too_short"}


def _review_call(fmt: Format, fn: Any, *args: Any, **kw: Any) -> Any:
    from engine.govern.review import ReviewError

    try:
        return fn(*args, **kw)
    except (ReviewError, CaseError, AuthError) as exc:
        _fail_diagnostics(exc.diagnostics, fmt,
                          EXIT_INPUT if exc.code in _REVIEW_INPUT_CODES or not isinstance(exc, ReviewError)
                          else EXIT_FINDINGS)


@review_app.command("list")
def review_list(workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt,
                status: str = typer.Option("pending", "--status", "-s",
                                           help="pending | approved | rejected | expired | applied | all")) -> None:
    """List review items (pending ones by default)."""
    engine = _open_engine(workspace, fmt)
    items = engine.review_list(None if status == "all" else status)
    if fmt == Format.json:
        out.print(json.dumps([i.to_json() for i in items], indent=2, default=str), markup=False)
        return
    from engine.cli.render import render_review_list

    render_review_list(out, items, status)


@review_app.command("show")
def review_show(item_id: str = typer.Argument(..., help="The review item id (R-...)."),
                workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Show one review item with its full context: case, facts, rules, LLM attempts, verdict."""
    engine = _open_engine(workspace, fmt)
    item = _review_call(fmt, engine.review_show, item_id)
    if fmt == Format.json:
        out.print(json.dumps(item.to_json(), indent=2, default=str), markup=False)
        return
    from engine.cli.render import render_review_item

    render_review_item(out, item)


@review_app.command("approve")
def review_approve(item_id: str = typer.Argument(..., help="The review item id (R-...)."),
                   reviewer: str | None = ReviewerOpt, key: str | None = ReviewerKeyOpt,
                   action: str | None = typer.Option(None, "--action", help="Approve this action instead of "
                                                        "the proposal waiting in the item."),
                   params: str | None = typer.Option(None, "--params", help="Its parameters as a JSON object."),
                   expect_hash: str | None = typer.Option(None, "--hash", help="The proposal hash you reviewed "
                                                             "(at least its first 12 characters): refuse if "
                                                             "it changed."),
                   note: str = typer.Option("", "--note"),
                   workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Approve an item: re-verified now against the deny guards, bound to the exact action and parameters."""
    from engine.govern.review import expected_hash

    if expect_hash is not None:  # bad input before the workspace is loaded (the engine checks it too)
        _review_call(fmt, expected_hash, expect_hash)
    engine = _open_engine(workspace, fmt)
    parsed = None
    if params is not None:
        try:
            parsed = json.loads(params)
        except (ValueError, RecursionError) as exc:
            _fail_diagnostics([Diagnostic("review_incomplete", f"--params {_unreadable(exc)}")],
                              fmt, EXIT_INPUT)
        if not isinstance(parsed, dict):
            _fail_diagnostics([Diagnostic("review_incomplete", "--params must be a JSON object")], fmt, EXIT_INPUT)
    if (action is None) != (parsed is None):
        _fail_diagnostics([Diagnostic("review_incomplete", "give --action and --params together")], fmt, EXIT_INPUT)
    item = _review_call(fmt, engine.review_approve, item_id, reviewer=reviewer, action=action, params=parsed,
                        expect_hash=expect_hash, note=note, key=key)
    if fmt == Format.json:
        out.print(json.dumps(item.to_json(), indent=2, default=str), markup=False)
    else:
        out.print(f"[green]approved[/] {item.id} by {item.reviewer}: {item.approved['action']} "
                  f"(hash {item.approved_hash[:12]}) — it can be applied once")


@review_app.command("reject")
def review_reject(item_id: str = typer.Argument(..., help="The review item id (R-...)."),
                  reviewer: str | None = ReviewerOpt, key: str | None = ReviewerKeyOpt,
                  reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
                  workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Reject an item, with a reason."""
    engine = _open_engine(workspace, fmt)
    item = _review_call(fmt, engine.review_reject, item_id, reviewer=reviewer, reason=reason, key=key)
    if fmt == Format.json:
        out.print(json.dumps(item.to_json(), indent=2, default=str), markup=False)
    else:
        out.print(f"[red]rejected[/] {item.id} by {item.reviewer}: {item.note}")


from engine.cli.audit_cmd import audit_app  # noqa: E402  (the `audit` commands, for auditors)

app.add_typer(audit_app, name="audit")

agents_app = typer.Typer(no_args_is_help=True, help="Identities: agents and reviewers, their keys.")
app.add_typer(agents_app, name="agents")


def _identity_kind(engine: Any, ident: str, fmt: Format) -> str:
    """`agent` or `reviewer`: an identity must be declared in the agents file before it gets a key."""
    reg = engine.ws.agents
    if not reg.implicit and ident in reg.agents:
        return "agent"
    if ident in reg.reviewers:
        return "reviewer"
    from engine.errors import suggest_help

    help_, _ = suggest_help(ident, {**reg.agents, **reg.reviewers}, "identities")
    _fail_diagnostics([Diagnostic("identity_unknown", f"`{ident}` is not declared in {reg.file or 'rules/agents.yaml'}",
                                  help=help_ or "declare the agent (its actions, limits, rulesets) or reviewer "
                                  "in rules/agents.yaml first: policy lives in the workspace, keys in the state "
                                  "database")], fmt, EXIT_INPUT)
    raise AssertionError  # unreachable


def _show_key(fmt: Format, issued: Any, verb: str, extra: dict[str, Any] | None = None) -> None:
    if fmt == Format.json:
        out.print(json.dumps({**issued.record.to_json(), "key": issued.token, **(extra or {})}, indent=2),
                  markup=False)
        return
    out.print(f"{verb} a key for {issued.record.kind} [bold]{issued.record.principal}[/] "
              f"(key id {issued.record.key_id}). It is shown once; store it in your secret manager:")
    out.print(issued.token, markup=False)


@agents_app.command("list")
def agents_list(workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Declared agents and reviewers, what they may do, and their keys."""
    engine = _open_engine(workspace, fmt)
    reg = engine.ws.agents
    keys = engine.identities.keys()
    revoked = engine.identities.revocations()
    rows = []
    for a in reg.agents.values():
        rows.append({"id": a.id, "kind": "agent", "description": a.description, "rulesets": list(a.rulesets),
                     "actions": ["*"] if a.all_actions else sorted(a.actions),
                     "limits": sum(len(v) for v in a.actions.values()), "default": a.id == reg.default})
    for r in reg.reviewers.values():
        rows.append({"id": r.id, "kind": "reviewer", "description": r.description, "rulesets": list(r.rulesets),
                     "actions": [], "limits": 0, "default": False})
    for row in rows:
        mine = [k for k in keys if k.principal == row["id"]]
        row["active_keys"] = [k.key_id for k in mine if k.active]
        row["revoked"] = revoked.get(row["id"])
    if fmt == Format.json:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    t = Table(title=f"identities ({reg.file or 'implicit: no agents file'})")
    for col in ("id", "kind", "rulesets", "actions", "keys", "status"):
        t.add_column(col)
    for row in rows:
        status = f"[red]revoked[/]: {row['revoked']}" if row["revoked"] else ("default" if row["default"] else "")
        t.add_row(row["id"], row["kind"], ", ".join(row["rulesets"]),
                  ", ".join(row["actions"]) + (f" ({row['limits']} limits)" if row["limits"] else ""),
                  ", ".join(row["active_keys"]) or "-", status)
    out.print(t)


@agents_app.command("add")
def agents_add(ident: str = typer.Argument(..., help="A declared agent or reviewer id."),
               workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Issue the first key of a declared identity (or reinstate a revoked one)."""
    engine = _open_engine(workspace, fmt)
    kind = _identity_kind(engine, ident, fmt)
    active = [k for k in engine.identities.keys(ident) if k.active]
    if active:
        _fail_diagnostics([Diagnostic("identity_has_key", f"`{ident}` already has an active key "
                                      f"({', '.join(k.key_id for k in active)})",
                                      help=f"use `rulebridge agents rotate {ident}` to replace it")],
                          fmt, EXIT_FINDINGS)
    _show_key(fmt, engine.identities.issue(ident, kind), "issued")


@agents_app.command("rotate")
def agents_rotate(ident: str = typer.Argument(..., help="A declared agent or reviewer id."),
                  workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Issue a new key and revoke every older key of the identity at once."""
    engine = _open_engine(workspace, fmt)
    kind = _identity_kind(engine, ident, fmt)
    issued, n = engine.identities.rotate(ident, kind)
    _show_key(fmt, issued, "rotated: issued", {"revoked_keys": n})
    if fmt == Format.text:
        out.print(f"{n} older key(s) revoked")


@agents_app.command("revoke")
def agents_revoke(ident: str = typer.Argument(..., help="A declared agent or reviewer id."),
                  reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
                  workspace: Path = WorkspaceOpt, fmt: Format = FormatOpt) -> None:
    """Revoke an identity and all its keys: it is refused from now on (`agents add` reinstates it)."""
    engine = _open_engine(workspace, fmt)
    _identity_kind(engine, ident, fmt)
    n = engine.identities.revoke(ident, reason)
    if fmt == Format.json:
        out.print(json.dumps({"id": ident, "revoked_keys": n, "reason": reason}), markup=False)
    else:
        out.print(f"[red]revoked[/] {ident} ({n} active key(s) revoked): {reason}")


@app.command()
def serve(workspace: Path = WorkspaceOpt,
          host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on."),
          port: int = typer.Option(8000, "--port", min=0, max=65535, help="The port to listen on."),
          workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (only 1 for now)."),
          require_keys: bool | None = typer.Option(None, "--require-keys/--no-require-keys",
                                                   help="Every request must carry a key (default: `[server] "
                                                        "require_keys`, else on)."),
          max_body_bytes: int = typer.Option(1024 * 1024, "--max-body-bytes", min=1,
                                             help="Larger request bodies are refused (413)."),
          log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level.")) -> None:
    """Serve the HTTP API (FastAPI under uvicorn) on the embedded defaults: /v1, /docs, /metrics."""
    if workers > 1:
        _fail_diagnostics([Diagnostic("serve_workers", f"--workers {workers}: one worker process for now",
                                      help="each worker would hold its own in-memory graph, so an action one "
                                           "executes would be unseen by the others; run one worker per workspace "
                                           "(several behind a proxy need `oxigraph-disk` or `sparql` and a shared "
                                           "state database, which is not supported yet)")], Format.text, EXIT_INPUT)
    try:
        from engine.server.serve import ServeOptions
        from engine.server.serve import serve as run_server
    except ImportError as exc:  # fastapi or uvicorn missing
        _fail_diagnostics([Diagnostic("serve_unavailable", f"the HTTP server cannot start: {exc}",
                                      help="fastapi and uvicorn are dependencies of rulebridge: reinstall it")],
                          Format.text, EXIT_FINDINGS)
    from engine.config import load_config
    from engine.errors import DiagnosticSink

    configured = load_config(workspace.resolve(), DiagnosticSink()).section("server").get("require_keys", True)
    keys = bool(configured) if require_keys is None else require_keys
    try:
        run_server(workspace, ServeOptions(host=host, port=port, require_keys=keys, max_body_bytes=max_body_bytes,
                                           log_level=log_level))
    except LoadError as exc:
        _fail_diagnostics(exc.diagnostics, Format.text, EXIT_FINDINGS)


@app.command()
def openapi(workspace: Path = WorkspaceOpt,
            output: Path | None = typer.Option(None, "--output", "-o", help="A file (default: stdout).")) -> None:
    """Write the HTTP API's OpenAPI document (with the workspace's action schemas)."""
    from engine.server.app import create_app

    engine = _open_engine(workspace, Format.text)
    text = openapi_text(create_app(engine).openapi())
    if output is None:
        out.print(text, markup=False, end="")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}", markup=False)


def openapi_text(doc: dict[str, Any]) -> str:
    """The OpenAPI document as it is kept in the repository (docs/openapi.json)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """The `rulebridge` console script: `app`, every failure reported as one coded line."""
    run(app)


if __name__ == "__main__":
    main()
