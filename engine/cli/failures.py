"""How the command line fails: every error ends in one coded report and an exit code, never a
traceback.

Commands report what they expect themselves (a case the engine refuses, a workspace with
errors). Whatever else escapes a command is mapped here, in one place, for every way the CLI is
run — the installed `rulebridge` script (`main`), `python -m engine.cli.main`, typer's test
runner — because the command group itself (`GuardedGroup`) catches it:

| what escaped | code | exit |
|---|---|---|
| a refused identity or case (`AuthError`, `CaseError`) | its own | 2 |
| any other engine error (`RulebridgeError`) | its own | 1 |
| the state database: not a database, damaged, disk full, locked | `state_unavailable` | 1 |
| a file or the disk (`OSError`: no space left, permission denied) | `io_error` | 1 |
| anything else: a bug | `internal_error` | 1 |

Messages are cut short (user input can be megabytes); `--format json` gets the same diagnostic
as JSON on stdout. `RULEBRIDGE_DEBUG=1` lets the exception through, with its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from engine.errors import (
    AuthError,
    CaseError,
    Diagnostic,
    RulebridgeError,
    render_json,
    render_text,
    shown,
)

EXIT_FINDINGS, EXIT_INPUT = 1, 2
MAX_MESSAGE = 500  # characters of one message of an error no command handled


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _database_error(exc: BaseException) -> bool:
    """An error of the state database (SQLAlchemy's wrapper, or the driver's own)."""
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DatabaseError, InterfaceError

        if isinstance(exc, (DatabaseError, InterfaceError)):
            return True
    import sqlite3

    return isinstance(exc, sqlite3.DatabaseError)


def diagnose(exc: BaseException) -> tuple[list[Diagnostic], int]:
    """The diagnostics and exit code of an error no command handled."""
    if isinstance(exc, RulebridgeError):
        diags = [Diagnostic(d.code, shown(d.message, MAX_MESSAGE), d.span, d.severity, d.help,
                            d.suggestion) for d in exc.diagnostics]
        code = EXIT_INPUT if isinstance(exc, (AuthError, CaseError)) else EXIT_FINDINGS
        return diags or [Diagnostic(exc.code, shown(str(exc), MAX_MESSAGE))], code
    if _database_error(exc):
        why = shown(_first_line(getattr(exc, "orig", None) or exc), MAX_MESSAGE)
        return [Diagnostic("state_unavailable", f"the state database cannot be used: {why}",
                           help="check `[storage] url` in rulebridge.toml or RULEBRIDGE_STATE_URL; "
                           "restore a damaged SQLite file from a backup or move it aside (a new "
                           "one is created); a full disk needs space")], EXIT_FINDINGS
    if isinstance(exc, OSError):
        what = (exc.strerror or _first_line(exc)).lower()
        name = errno.errorcode.get(exc.errno or 0)
        where = f" `{shown(str(exc.filename), 200)}`" if exc.filename else ""
        return [Diagnostic("io_error", f"cannot read or write{where}: {what}"
                           + (f" ({name})" if name else ""),
                           help="free some disk space" if exc.errno == errno.ENOSPC else None)
                ], EXIT_FINDINGS
    why = shown(_first_line(exc), MAX_MESSAGE)
    return [Diagnostic("internal_error", f"unexpected {type(exc).__name__}: {why}",
                       help="this is a bug in rulebridge; RULEBRIDGE_DEBUG=1 shows the traceback")
            ], EXIT_FINDINGS


def wants_json(args: list[str]) -> bool:
    """Whether the command line asks for `--format json` (`-f json`, `--format=json`, `-fjson`)."""
    for i, a in enumerate(args):
        if a in ("--format=json", "-fjson"):
            return True
        if a in ("-f", "--format") and args[i + 1:i + 2] == ["json"]:
            return True
    return False


def report(exc: BaseException, *, json_out: bool) -> int:
    """Print the report of `exc` (stderr; JSON on stdout with `json_out`); its exit code."""
    diags, code = diagnose(exc)
    if json_out:
        typer.echo(render_json(diags))
    else:
        typer.echo(render_text(diags), err=True)
    return code


class GuardedGroup(TyperGroup):
    """The top command group: what a command lets escape is reported here (`diagnose`)."""

    # `ctx`: typer's click context (`typer.Context` derives from it; typer vendors click privately)
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["rulebridge.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            # how a command ends on purpose; `TyperException`: the usage errors of the click that
            # typer carries (`typer._click`, not the `click` package: typer no longer depends on it)
            raise
        except Exception as exc:
            if os.environ.get("RULEBRIDGE_DEBUG") == "1":
                raise
            argv = ctx.meta.get("rulebridge.argv", [])
            raise typer.Exit(report(exc, json_out=wants_json(argv))) from None


def run(app: typer.Typer) -> None:
    """Run the CLI as a script: `app`, and whatever escapes even the group reported the same way."""
    try:
        app()
    except Exception as exc:  # the last resort: a report, never a traceback
        if os.environ.get("RULEBRIDGE_DEBUG") == "1":
            raise
        sys.exit(report(exc, json_out=wants_json(sys.argv[1:])))
