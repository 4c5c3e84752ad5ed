"""A custom connector (`examples/custom_connector.py`) named by `module:Class` in the configuration."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from engine.act.connectors.base import Connector, PermanentError
from engine.act.connectors.registry import ConnectorConfigError, build_connectors, load_class
from engine.act.connectors.resilience import Resilient
from engine.errors import DiagnosticSink
from engine.kg.store import OxigraphStore
from engine.lang.actions import load_actions
from engine.workspace import load_workspace
from tests.brightwater import ROOT, engine, workspace
from tests.conftest import MINI

INVOICE = "https://brightwater.example/id/INV-10001"
ACTIONS = """
actions:
  approve_invoice:
    description: Ask AP to approve an invoice.
    params: {invoice: Invoice}
    execute: {connector: tickets, queue: accounts-payable, title: "Approve {invoice}"}
"""


@pytest.fixture(scope="module")
def actions(tmp_path_factory):
    f = tmp_path_factory.mktemp("custom") / "actions.yaml"
    f.write_text(ACTIONS, encoding="utf-8")
    sink = DiagnosticSink()
    catalog = load_actions(f, workspace().schema, sink)
    assert not sink.errors, sink.errors
    return catalog


def tickets_config(cls: str = "examples.custom_connector:TicketConnector") -> dict:
    return {"connectors": {"tickets": {"kind": "python", "class": cls, "path": "out/tickets.jsonl", "retries": 1}}}


def build(config: dict, actions, root) -> dict:
    return build_connectors(config, OxigraphStore.from_files([]), actions, root=root)


@pytest.fixture(autouse=True)
def _example_in_the_workspace(tmp_path):
    """Each test's workspace holds the example connector, as the repository's workspace does: a
    class is loaded from the workspace or the installed packages only."""
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "custom_connector.py", tmp_path / "examples")


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_the_example_is_built_from_the_configuration_and_files_one_ticket_per_key(tmp_path, actions):
    conns = build_connectors(tickets_config(), OxigraphStore.from_files([]), actions, root=tmp_path)
    tickets = conns["tickets"]
    assert isinstance(tickets, Resilient) and isinstance(tickets.inner, Connector)
    first = tickets.execute("approve_invoice", {"invoice": INVOICE}, key="key-0001")
    again = tickets.execute("approve_invoice", {"invoice": INVOICE}, key="key-0001")
    assert first == {"ticket": "T-key-0001", "duplicate": False}
    assert again == {"ticket": "T-key-0001", "duplicate": True}
    [ticket] = lines(tmp_path / "out" / "tickets.jsonl")
    assert ticket["title"] == f"Approve {INVOICE}" and ticket["queue"] == "accounts-payable"
    assert tickets.status("key-0001") == "done" and tickets.status("key-0002") == "not_done"


def test_a_torn_line_from_a_crash_is_not_an_execution(tmp_path, actions):
    tickets = build_connectors(tickets_config(), OxigraphStore.from_files([]), actions, root=tmp_path)["tickets"]
    tickets.execute("approve_invoice", {"invoice": INVOICE}, key="key-1")
    with open(tmp_path / "out" / "tickets.jsonl", "a", encoding="utf-8") as f:
        f.write('{"key": "key-2", "tick')  # the process died mid-write
    assert tickets.status("key-2") == "not_done"
    tickets.execute("approve_invoice", {"invoice": INVOICE}, key="key-3")
    assert tickets.status("key-1") == tickets.status("key-3") == "done"


def test_a_bad_template_is_a_permanent_error(tmp_path, actions):
    tickets = build_connectors(tickets_config(), OxigraphStore.from_files([]), actions, root=tmp_path)["tickets"]
    with pytest.raises(PermanentError) as info:
        tickets.execute("approve_invoice", {}, key="k")
    assert info.value.code == "connector_bad_params"
    assert not (tmp_path / "out" / "tickets.jsonl").exists()


def test_a_class_is_found_in_the_workspace_when_it_is_not_installed(tmp_path):
    (tmp_path / "connectors_of_ws").mkdir()
    shutil.copy(ROOT / "examples" / "custom_connector.py", tmp_path / "connectors_of_ws" / "tickets.py")
    cls = load_class("connectors_of_ws.tickets:TicketConnector", tmp_path)
    assert cls.__name__ == "TicketConnector" and cls.__module__ == "connectors_of_ws.tickets"


@pytest.mark.parametrize("ref,message", [
    ("no_such_module_anywhere:Thing", "not found"),
    ("examples.custom_connector:NoSuchClass", "has no class"),
    ("examples.custom_connector", "is not `module:Class`"),
])
def test_a_class_that_cannot_be_loaded_is_a_config_error(tmp_path, actions, ref, message):
    conn = build(tickets_config(ref), actions, tmp_path)["tickets"]
    with pytest.raises(ConnectorConfigError, match=message) as info:
        conn.ready()  # loaded on first use
    assert info.value.code == "connector_config"


def test_a_class_that_is_no_connector_is_refused(tmp_path, actions):
    (tmp_path / "not_a_connector.py").write_text(
        "class Nope:\n    def __init__(self, name, **kw):\n        self.name = name\n", encoding="utf-8")
    for ref, message in (("not_a_connector:Nope", "does not implement the connector protocol"),
                         ("pathlib:PurePath", "cannot be built")):
        conn = build(tickets_config(ref), actions, tmp_path)
        with pytest.raises(ConnectorConfigError, match=message) as info:
            conn["tickets"].ready()
        assert info.value.code == "connector_config"


# -- a workspace is trusted like source code: where a class may come from -------------------------

def _module_that_tells(path, marker) -> None:
    """A module that leaves `marker` when it is imported (its code ran), then fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                    "raise RuntimeError('this module must not be imported')\n"
                    "class Thing:\n    pass\n", encoding="utf-8")


@pytest.mark.parametrize("ref", ["{outside}/evil:Thing", "{outside}/evil.py:Thing",
                                 "../evil:Thing", "..evil:Thing", ".evil:Thing",
                                 "evil/../evil:Thing", "evil:Thing()", "evil:"],
                         ids=["absolute-path", "absolute-file", "relative-path", "relative-import",
                              "dot-relative", "dotdot-inside", "not-a-class-name", "no-class"])
def test_a_class_path_that_is_not_a_dotted_module_name_is_refused(tmp_path, actions, ref):
    # Regression: `/abs/path/evil:Thing` imported /abs/path/evil.py, wherever it was, and
    # `..evil:Thing` raised a bare TypeError: a path is never a module name.
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    marker = tmp_path / "ran"
    _module_that_tells(outside / "evil.py", marker)
    _module_that_tells(ws / "evil.py", marker)
    with pytest.raises(ConnectorConfigError) as info:
        load_class(ref.format(outside=outside), ws)
    assert info.value.code == "connector_config"
    assert not marker.exists()


def test_a_workspace_file_that_links_outside_the_workspace_is_refused(tmp_path):
    ws, marker = tmp_path / "ws", tmp_path / "ran"
    _module_that_tells(tmp_path / "outside" / "evil.py", marker)
    ws.mkdir()
    (ws / "linked.py").symlink_to(tmp_path / "outside" / "evil.py")
    with pytest.raises(ConnectorConfigError, match="outside the workspace") as info:
        load_class("linked:Thing", ws)
    assert info.value.code == "connector_config" and not marker.exists()


def test_a_module_found_only_on_the_current_directory_is_refused(tmp_path, monkeypatch):
    # Regression: a module importable from wherever the command ran (the current directory, any
    # sys.path entry) was imported — its code run — though neither installed nor in the workspace.
    ws, here, marker = tmp_path / "ws", tmp_path / "here", tmp_path / "ran"
    ws.mkdir()
    _module_that_tells(here / "cwd_only_connector.py", marker)
    monkeypatch.chdir(here)
    monkeypatch.syspath_prepend(str(here))
    with pytest.raises(ConnectorConfigError, match="outside the workspace and the installed") as info:
        load_class("cwd_only_connector:Thing", ws)
    assert info.value.code == "connector_config"
    assert not marker.exists()


def test_a_workspace_file_is_preferred_to_a_module_found_outside_it(tmp_path, monkeypatch):
    ws, here = tmp_path / "ws", tmp_path / "here"
    (ws / "shadowed").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "custom_connector.py", ws / "shadowed" / "tickets.py")
    _module_that_tells(here / "shadowed" / "tickets.py", tmp_path / "ran")
    (here / "shadowed" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(here))
    assert load_class("shadowed.tickets:TicketConnector", ws).__name__ == "TicketConnector"
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("ref", ["engine.act.connectors.kg:KgConnector", "pathlib:PurePath",
                                 "examples.custom_connector:TicketConnector"],
                         ids=["rulebridge", "standard-library", "the-repository-workspace"])
def test_installed_packages_and_the_workspace_are_trusted(ref):
    assert isinstance(load_class(ref, ROOT), type)


def test_check_refuses_a_class_outside_the_workspace_without_running_it(tmp_path):
    ws, marker = tmp_path / "ws", tmp_path / "ran"
    shutil.copytree(MINI, ws)
    _module_that_tells(tmp_path / "outside" / "evil.py", marker)
    with open(ws / "rulebridge.toml", "a", encoding="utf-8") as f:
        f.write(f'\n[connectors.evil]\nkind = "python"\nclass = "{tmp_path}/outside/evil:Thing"\n')
    diags = [d for d in load_workspace(ws, load_graph=False).errors if d.code == "config"]
    assert len(diags) == 1 and "connector `evil`" in diags[0].message, diags
    assert diags[0].span.line > 1 and not marker.exists()


# -- imported when used ---------------------------------------------------------------------

def test_a_python_connector_no_action_binds_is_not_imported(tmp_path, actions):
    marker = tmp_path / "ran"
    _module_that_tells(tmp_path / "unused_connector.py", marker)
    config = tickets_config()
    config["connectors"]["unused"] = {"kind": "python", "class": "unused_connector:Thing"}
    conns = build(config, actions, tmp_path)
    done = conns["tickets"].execute("approve_invoice", {"invoice": INVOICE}, key="k1")
    assert done["ticket"] == "T-k1"
    assert not marker.exists()


def test_a_bound_connector_that_cannot_be_imported_fails_its_action_cleanly(tmp_path, actions):
    _module_that_tells(tmp_path / "broken_connector.py", tmp_path / "ran")
    conns = build(tickets_config("broken_connector:Thing"), actions, tmp_path)  # nothing imported
    assert not (tmp_path / "ran").exists()
    with pytest.raises(PermanentError) as info:
        conns["tickets"].execute("approve_invoice", {"invoice": INVOICE}, key="k1")
    assert info.value.code == "connector_config"
    assert "this module must not be imported" in str(info.value)


def test_a_chain_whose_connector_cannot_be_imported_is_refused_before_it_runs(tmp_path, actions):
    from engine.act.execute import ExecutionError, Executor, Step
    from engine.act.ledger import Ledger

    _module_that_tells(tmp_path / "broken_connector.py", tmp_path / "ran")
    config = tickets_config()
    config["connectors"]["broken"] = {"kind": "python", "class": "broken_connector:Thing"}
    conns = build(config, actions, tmp_path)
    ledger = Ledger(f"sqlite:///{tmp_path}/state.db")
    steps = [Step("approve_invoice", {"invoice": INVOICE}, "tickets"),
             Step("approve_invoice", {"invoice": INVOICE}, "broken")]
    with pytest.raises(ExecutionError) as info:
        Executor(ledger, conns).run("d1", "ops", steps)
    assert info.value.code == "connector_config" and "step 1" in str(info.value)
    assert ledger.chain("d1") is None and ledger.executions("d1") == []
    assert not (tmp_path / "out" / "tickets.jsonl").exists()  # step 0 did not run either
    ledger.close()


def test_an_unbound_connector_that_fails_to_import_does_not_stop_execution(tmp_path):
    # Regression: opening the executor imported every declared python connector, so one that
    # raised at import broke `execute` of every action, though none was bound to it.
    from tests.test_governed import first_approved

    ws = tmp_path / "ws"
    shutil.copytree(ROOT, ws, ignore=shutil.ignore_patterns(".*", "tests", "benchmarks", "examples",
                                                            "*.egg-info", "__pycache__"))
    _module_that_tells(ws / "broken_connector.py", tmp_path / "ran")
    with open(ws / "rulebridge.toml", "a", encoding="utf-8") as f:
        f.write('\n[connectors.broken]\nkind = "python"\nclass = "broken_connector:Thing"\n')
    e = engine(None, ws=load_workspace(ws), state=tmp_path / "state.db")
    _, d = first_approved(e)
    assert e.execute(d.id).outcome == "done"
    assert not (tmp_path / "ran").exists()


def test_the_example_runs_as_a_script():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_connector.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0] == "{'ticket': 'T-demo-key-1', 'duplicate': False}"
    assert out[1] == "{'ticket': 'T-demo-key-1', 'duplicate': True}"
    assert out[2] == "done not_done"
    assert len(out) == 4 and json.loads(out[3])["key"] == "demo-key-1"
