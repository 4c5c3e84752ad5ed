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
from tests.brightwater import ROOT, workspace

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
    with pytest.raises(ConnectorConfigError, match=message):
        build_connectors(tickets_config(ref), OxigraphStore.from_files([]), actions, root=tmp_path)


def test_a_class_that_is_no_connector_is_refused(tmp_path, actions):
    (tmp_path / "not_a_connector.py").write_text(
        "class Nope:\n    def __init__(self, name, **kw):\n        self.name = name\n", encoding="utf-8")
    with pytest.raises(ConnectorConfigError, match="does not implement the connector protocol"):
        build_connectors(tickets_config("not_a_connector:Nope"), OxigraphStore.from_files([]), actions, root=tmp_path)
    with pytest.raises(ConnectorConfigError, match="cannot be built"):
        build_connectors(tickets_config("pathlib:PurePath"), OxigraphStore.from_files([]), actions, root=tmp_path)


def test_the_example_runs_as_a_script():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_connector.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0] == "{'ticket': 'T-demo-key-1', 'duplicate': False}"
    assert out[1] == "{'ticket': 'T-demo-key-1', 'duplicate': True}"
    assert out[2] == "done not_done"
    assert len(out) == 4 and json.loads(out[3])["key"] == "demo-key-1"
