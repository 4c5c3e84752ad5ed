"""How the command line fails (`engine/cli/failures.py`): every error a user can cause — a
file that is not UTF-8, a folder where a file belongs, JSON nested or numbered past what Python
parses, a full disk, a damaged state database, an exception nobody expected — ends in one
coded line and exit 2 (bad input) or 1, never a traceback, and never renders megabytes.

Through typer's runner on `app`, and through the installed `rulebridge` script as a user runs it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from tests.conftest import MINI

runner = CliRunner()
CASE = {"type": "invoice.received", "payload": {"invoice": "ex:I1"}, "as_of": "2026-11-01"}


def fails(args: list[str], code: str, exit_code: int):
    """Run the CLI; it must fail with `error[code]` in one short report and no traceback."""
    r = runner.invoke(app, args)
    assert r.exit_code == exit_code, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit), repr(r.exception)  # ended by the CLI, not a crash
    assert f"[{code}]" in r.output or f'"code": "{code}"' in r.output, r.output
    assert "Traceback" not in r.output and len(r.output) < 4000, r.output[:2000]
    return r


def case_file(tmp_path: Path, body: str | bytes, name: str = "case.json") -> Path:
    f = tmp_path / name
    (f.write_bytes if isinstance(body, bytes) else f.write_text)(body)
    return f


# -- case files --------------------------------------------------------------------------------

def test_a_case_file_that_is_not_utf8(tmp_path):
    f = case_file(tmp_path, json.dumps(CASE).encode().replace(b"ex:I1", b"ex:I1\xe9"))
    r = fails(["decide", str(f), "-w", str(MINI)], "case_invalid", 2)
    assert "is not UTF-8" in r.output


def test_a_case_path_that_is_a_folder(tmp_path):
    r = fails(["decide", str(tmp_path), "-w", str(MINI)], "case_invalid", 2)
    assert "is a folder" in r.output


def test_a_case_file_nested_past_the_parser(tmp_path):
    # Regression: 100,000 nested lists made json.loads raise RecursionError: a traceback.
    f = case_file(tmp_path, "[" * 100_000 + "]" * 100_000)
    r = fails(["decide", str(f), "-w", str(MINI), "-f", "json"], "case_invalid", 2)
    assert "nested" in json.loads(r.stdout)[0]["message"]


def test_a_case_nested_deeper_than_a_case_may_be(tmp_path):
    deep: object = "x"
    for _ in range(40):
        deep = [deep]
    f = case_file(tmp_path, json.dumps({**CASE, "payload": {"invoice": "ex:I1", "x": deep}}))
    r = fails(["decide", str(f), "-w", str(MINI)], "case_invalid", 2)
    assert "nested more than 32 levels" in r.output


def test_an_integer_too_long_to_parse(tmp_path):
    # Regression: 5,000 digits exceed Python's limit for int(str): ValueError, a traceback.
    f = case_file(tmp_path, json.dumps(CASE)[:-1] + ', "id": ' + "9" * 5000 + "}")
    r = fails(["decide", str(f), "-w", str(MINI)], "case_invalid", 2)
    assert "digits" in r.output


@pytest.mark.parametrize("body", [b'{"type": "invoice.received"}\n\xff\n', b"[" * 100_000 + b"\n",
                                  b'{"id": ' + b"9" * 5000 + b"}\n", b"{not json\n"],
                         ids=["not-utf8", "nested", "long-integer", "not-json"])
def test_a_demo_cases_file_that_is_no_cases(tmp_path, body):
    f = case_file(tmp_path, body, "cases.jsonl")
    fails(["demo", "-w", str(MINI), "--cases", str(f)], "case_invalid", 2)


@pytest.mark.parametrize("params", ["[" * 100_000, '{"percent": ' + "9" * 5000 + "}"],
                         ids=["nested", "long-integer"])
def test_review_params_that_python_cannot_read(state, params):
    r = fails(["review", "approve", "R-1", "--reviewer", "x", "--action", "a", "--params", params,
               "-w", str(MINI)], "review_incomplete", 2)
    assert "--params is not valid JSON" in r.output


def test_an_integer_beyond_any_case_number_from_python():
    from engine import Engine
    from engine.errors import CaseError

    engine = Engine.open(MINI)
    with pytest.raises(CaseError) as info:
        engine.decide({**CASE, "payload": {"invoice": "ex:I1", "x": 10**5000}}, review=False)
    assert info.value.code == "case_invalid" and "±1.8e+308" in str(info.value)


# -- workspace files -----------------------------------------------------------------------------

@pytest.fixture
def ws(tmp_path):
    w = tmp_path / "ws"
    shutil.copytree(MINI, w)
    return w


def test_a_config_file_that_is_not_utf8(ws):
    with open(ws / "rulebridge.toml", "ab") as f:
        f.write(b'\n# caf\xe9\n')
    r = fails(["check", str(ws)], "config", 1)
    assert "not UTF-8" in r.output


def test_a_config_file_that_is_a_folder(ws):
    (ws / "rulebridge.toml").unlink()
    (ws / "rulebridge.toml").mkdir()
    fails(["check", str(ws)], "config", 1)


def test_a_query_file_that_is_not_utf8(ws):
    query = min((ws / "knowledge_graph" / "queries").glob("*.rq"))
    query.write_bytes(query.read_bytes() + b"\n# \xff\n")
    r = fails(["check", str(ws)], "query", 1)
    assert query.name in r.output and "not UTF-8" in r.output


def test_a_rule_file_that_is_not_utf8(ws):
    rule = ws / "rules" / "ap.yaml"
    rule.write_bytes(rule.read_bytes().replace(b"Duplicates", b"Dupl\xe9cates"))
    fails(["check", str(ws)], "yaml_syntax", 1)


def test_a_workspace_that_is_a_file(tmp_path):
    # Regression: `check README.md` said "ok: 0 rulesets" — nothing was checked.
    f = case_file(tmp_path, "{}")
    r = fails(["check", str(f)], "config", 1)
    assert "is not a folder" in r.output


def test_a_workspace_that_does_not_exist(tmp_path):
    fails(["check", str(tmp_path / "nowhere")], "config", 1)


# -- the state database and the disk -------------------------------------------------------------

@pytest.fixture
def state(tmp_path, monkeypatch):
    db = tmp_path / "state" / "state.db"
    monkeypatch.setenv("RULEBRIDGE_STATE_URL", f"sqlite:///{db}")
    return db


@pytest.fixture
def failing_writes(monkeypatch):
    """`failing_writes(error)`: from now on every INSERT into any database fails with `error`, as
    a full disk makes it fail (no back-off waits between the retries)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine as SAEngine

    installed = []

    def install(error: BaseException) -> None:
        def refuse(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith("INSERT"):
                raise error

        event.listen(SAEngine, "before_cursor_execute", refuse)
        installed.append(refuse)

    monkeypatch.setattr("tenacity.nap.time.sleep", lambda s: None)
    yield install
    for fn in installed:
        event.remove(SAEngine, "before_cursor_execute", fn)


def test_a_full_disk_when_writing_the_state_database(tmp_path, state, failing_writes):
    f = case_file(tmp_path, json.dumps(CASE))
    failing_writes(OSError(errno.ENOSPC, "No space left on device"))
    r = fails(["decide", str(f), "-w", str(MINI)], "io_error", 1)
    assert "no space left on device" in r.output.lower()


def test_a_full_disk_as_sqlite_reports_it(tmp_path, state, failing_writes):
    f = case_file(tmp_path, json.dumps(CASE))
    failing_writes(sqlite3.OperationalError("database or disk is full"))
    r = fails(["decide", str(f), "-w", str(MINI)], "state_unavailable", 1)
    assert "database or disk is full" in r.output


@pytest.mark.parametrize("args", [["decide", "{case}"], ["review", "list"], ["execute", "d1"]],
                         ids=["decide", "review-list", "execute"])
def test_a_state_file_that_is_not_a_database(tmp_path, state, args):
    state.parent.mkdir()
    state.write_bytes(b"not a database " * 300)
    f = case_file(tmp_path, json.dumps(CASE))
    r = fails([a.format(case=f) for a in args] + ["-w", str(MINI)], "state_unavailable", 1)
    assert "file is not a database" in r.output


def test_audit_verify_reports_a_state_file_that_is_not_a_database_as_a_broken_log(state):
    """`audit verify` is the auditor's check of that file: it reports it as its finding."""
    state.parent.mkdir()
    state.write_bytes(b"not a database " * 300)
    r = CliRunner().invoke(app, ["audit", "verify", "-w", str(MINI)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "db_corrupt" in r.output and "file is not a database" in r.output


def test_an_unhandled_failure_is_json_with_format_json(state):
    state.parent.mkdir()
    state.write_bytes(b"not a database " * 300)
    r = fails(["review", "list", "-w", str(MINI), "-f", "json"], "state_unavailable", 1)
    [diag] = json.loads(r.stdout)
    assert diag["code"] == "state_unavailable" and diag["help"]


# -- nothing renders megabytes -------------------------------------------------------------------

def test_a_200kb_agent_name_is_refused_in_one_short_line(tmp_path, state):
    # Regression: the audit log refused the refusal's event (`audit_invalid`), which escaped as a
    # rich traceback quoting the name (reported to hang in rich's highlighter).
    f = case_file(tmp_path, json.dumps({**CASE, "agent": "\u202e" + "a" * 200_000}))
    r = fails(["decide", str(f), "-w", str(MINI)], "agent_name_invalid", 2)
    assert "\\u202eaaaa" in r.output and "…" in r.output


def test_a_200kb_case_type_is_shown_cut_short(tmp_path):
    f = case_file(tmp_path, json.dumps({**CASE, "type": "t" * 200_000}))
    fails(["decide", str(f), "-w", str(MINI)], "no_ruleset", 2)


def test_a_200kb_unknown_case_key_is_shown_cut_short(tmp_path):
    f = case_file(tmp_path, json.dumps({**CASE, "k" * 200_000: 1}))
    fails(["decide", str(f), "-w", str(MINI)], "case_invalid", 2)


def test_200kb_of_text_where_a_value_belongs_is_shown_cut_short(tmp_path):
    f = case_file(tmp_path, json.dumps({**CASE, "payload": {"invoice": "x" * 200_000},
                                        "as_of": "2026-11-01" + "y" * 200_000}))
    fails(["decide", str(f), "-w", str(MINI)], "case_invalid", 2)


@pytest.mark.parametrize("args, code, exit_code", [
    (["execute", "d" * 100_000], "decision_not_found", 2),
    (["review", "show", "R-" + "x" * 100_000], "review_not_found", 2),
    (["audit", "show", "d" * 100_000], "audit_unknown_decision", 2),
    (["audit", "verify", "--anchor", "9" * 5000 + ":" + "0" * 64], "audit_bad_anchor", 2),
    (["audit", "export", "-f", "jsonl", "--since", "2026" * 25_000], "audit_bad_time", 2),
], ids=["decision-id", "review-id", "audit-decision-id", "anchor", "since"])
def test_100kb_of_an_argument_is_shown_cut_short(tmp_path, state, args, code, exit_code):
    case = case_file(tmp_path, json.dumps(CASE))
    assert runner.invoke(app, ["decide", str(case), "-w", str(MINI)]).exit_code == 0  # a log exists
    fails([*args, "-w", str(MINI)], code, exit_code)


def test_an_unexpected_error_is_one_coded_line(tmp_path, monkeypatch):
    from engine.api import Engine

    def broken(*args, **kw):
        raise RuntimeError("something nobody planned for " + "x" * 200_000)

    monkeypatch.setattr(Engine, "decide", broken)
    f = case_file(tmp_path, json.dumps(CASE))
    r = fails(["decide", str(f), "-w", str(MINI)], "internal_error", 1)
    assert "RULEBRIDGE_DEBUG=1" in r.output


def test_an_unknown_option_is_a_usage_error_not_a_bug():
    # Regression (found by mypy): the group let through only the `click` package's exceptions,
    # but typer raises those of the click it carries: a mistyped option was an `internal_error`.
    r = runner.invoke(app, ["check", "--no-such-option"])
    assert r.exit_code == 2, r.output
    assert "internal_error" not in r.output and "No such option" in r.output


def test_the_cli_needs_no_click_package():
    # Regression: `engine.cli.failures` imported `click`, which typer no longer installs: without
    # the `llm` extra (litellm brings click) the `rulebridge` script failed at import.
    code = "import sys; sys.modules['click'] = None; import engine.cli.main"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]


# -- the installed script ------------------------------------------------------------------------

def _script() -> Path:
    script = Path(sys.executable).parent / "rulebridge"
    assert script.exists(), f"no `rulebridge` script beside {sys.executable}: pip install -e ."
    return script


def _run(cmd: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RULEBRIDGE_STATE_URL": f"sqlite:///{tmp_path}/state.db", **env}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
                          check=False)


def test_the_console_script_is_the_guarded_main():
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "rulebridge"]
    assert script.value == "engine.cli.main:main", "reinstall the package: pip install -e ."


def test_the_installed_script_refuses_a_200kb_agent_name_without_a_traceback(tmp_path):
    f = case_file(tmp_path, json.dumps({**CASE, "agent": "a" * 200_000}))
    p = _run([str(_script()), "decide", str(f), "-w", str(MINI)], tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "error[agent_name_invalid]" in p.stderr
    assert len(p.stderr) < 4000


@pytest.mark.parametrize("body", [b"\xff\xfe not utf-8", b"[" * 100_000],
                         ids=["not-utf8", "nested"])
def test_the_installed_script_reports_a_bad_case_file(tmp_path, body):
    f = case_file(tmp_path, body)
    p = _run([str(_script()), "decide", str(f), "-w", str(MINI)], tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "error[case_invalid]" in p.stderr, p.stderr


def test_the_module_runs_as_the_script_does_on_a_damaged_state_file(tmp_path):
    (tmp_path / "state.db").write_bytes(b"garbage " * 512)
    p = _run([sys.executable, "-m", "engine.cli.main", "review", "list", "-w", str(MINI)], tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "error[state_unavailable]" in p.stderr
