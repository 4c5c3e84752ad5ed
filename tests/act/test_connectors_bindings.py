"""Action bindings (`execute:`, `inverse:` in rules/actions.yaml) and connector declarations.

The shipped workspace binds every action to the graph; a broken workspace written per test
gets every problem reported at file:line:col with the offending text underlined.
"""

from __future__ import annotations

import pytest

from engine.act.connectors.registry import ConnectorConfigError, build_connectors, declared
from engine.errors import Diagnostic
from engine.workspace import load_workspace
from tests.brightwater import ROOT, workspace

# -- the shipped workspace ------------------------------------------------------------------------------


def test_every_workspace_action_is_bound_to_the_graph():
    ws = workspace()
    assert ws.actions.actions and not ws.errors
    for spec in ws.actions.actions.values():
        assert spec.execute is not None and spec.execute.connector == "kg", spec.name
        assert spec.execute.template.get("where"), spec.name


def test_inverses_name_bound_actions_and_derive_their_parameters():
    acts = workspace().actions.actions
    expected = {"approve_invoice": "reopen_invoice", "hold_invoice": "release_invoice_hold",
                "hold_payment": "release_payment_hold", "approve_discount": "revoke_discount",
                "assign_lead": "unassign_lead"}
    assert {n: s.inverse.action for n, s in acts.items() if s.inverse} == expected
    assert acts["release_payment"].inverse is None  # money that left is for a person to recall
    inv = acts["approve_invoice"].inverse
    assert inv.derive({"invoice": "bwd:INV-1", "approver": "bwd:EMP-1", "note": "x"}) == {"invoice": "bwd:INV-1"}
    for target in expected.values():  # an inverse has no inverse of its own (the executor refuses that)
        assert acts[target].inverse is None and acts[target].execute is not None


def test_the_graph_is_the_default_connector():
    assert declared({}) == {"kg": {"kind": "kg"}}
    assert set(declared({"connectors": {"erp": {"kind": "sql", "url": "sqlite://"}}})) == {"erp", "kg"}


# -- a broken workspace ----------------------------------------------------------------------------------

TOML = f"""
[rules]
dir = "rules"
actions = "rules/actions.yaml"

[graph]
ontology = "{(ROOT / 'knowledge_graph' / 'ontology').as_posix()}"
data = "data"

[prefixes]
bw = "https://brightwater.example/ontology#"

[connectors.erp]
kind = "sql"
url = "sqlite:///erp.db"

[connectors.crm]
kind = "http"

[connectors.ticketing]
kind = "mainframe"
"""

ACTIONS = """
actions:
  approve_invoice:
    description: Approve.
    params: {invoice: Invoice, approver: Employee, note: {type: string, required: false}}
    execute:
      connector: kg
      where: |
        ?invoice a bw:Invoice ; bw:status ?status .
        ?invioce bw:amount ?amount .
      delete: ?invoice bw:status ?status .
      insert: ?invoice bw:status "approved" ; bw:approved_by ?aprover .
    inverse: {action: reopen_invoce, params: {invoice: params.invoice}}
  hold_invoice:
    description: Hold.
    params: {invoice: Invoice, reason: string}
    execute: {connector: kgg, where: "?invoice a bw:Invoice", insert: "?invoice bw:hold_reason ?reason"}
    inverse: {action: approve_invoice, params: {invoice: params.invoice, approver: params.reason, notes: params.reason}}
  tag_everything:
    description: Unanchored.
    params: {tag: string}
    execute: {connector: kg, where: "?x a bw:Invoice", insert: "?x bw:tag ?tag"}
  broken_sparql:
    description: Not SPARQL.
    params: {invoice: Invoice}
    execute: {connector: kg, where: "?invoice a bw:Invoice", insert: "?invoice bw:tag ((("}
  pay_in_erp:
    description: SQL.
    params: {invoice: Invoice, amount: number}
    execute: {connector: erp, sql: "UPDATE invoices SET paid = :amout WHERE iri = :invoice AND note = ':not_a_bind'"}
  assign_in_crm:
    description: HTTP.
    params: {lead: Lead, owner: Employee}
    execute: {connector: crm, method: POST, path: "/leads/{leed}/owner", body: {owner: params.ownr}}
    inverse: unassign_in_crm
  unassign_in_crm:
    description: HTTP.
    params: {lead: Lead, reason: string}
    execute: {connector: crm, method: DELETE, path: "/leads/{lead}/owner"}
"""


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> tuple[list[Diagnostic], str, str]:
    root = tmp_path_factory.mktemp("broken")
    (root / "rules").mkdir()
    (root / "data").mkdir()
    (root / "rulebridge.toml").write_text(TOML, encoding="utf-8")
    (root / "rules" / "actions.yaml").write_text(ACTIONS, encoding="utf-8")
    ws = load_workspace(root, load_graph=False)
    return ws.diagnostics, ACTIONS, TOML


def at(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """The 1-based line and column of the `nth` occurrence of `needle` in `text`."""
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


def find(diags: list[Diagnostic], code: str, fragment: str) -> Diagnostic:
    hits = [d for d in diags if d.code == code and fragment in d.message]
    assert len(hits) == 1, (code, fragment, [(d.code, d.message) for d in diags])
    return hits[0]


def underlined(d: Diagnostic, text: str) -> str:
    line = text.splitlines()[d.span.line - 1]
    return line[d.span.col - 1:d.span.end_col - 1]


@pytest.mark.parametrize("code,fragment,needle,text_underlined", [
    ("unknown_name", "unknown connector `kgg`", "kgg", "kgg"),
    ("unknown_name", "unknown template parameter `?aprover`", "?aprover", "?aprover"),
    ("unknown_name", "`?invioce` is not a parameter", "?invioce", "?invioce"),
    ("unknown_name", "`tag_everything` uses none of its parameters", '"?x a bw:Invoice"', None),
    ("query", "`broken_sparql` is not valid SPARQL", ('{connector: kg, where: "?invoice a bw:Invoice", insert: '
     '"?invoice bw:tag'), None),
    ("unknown_name", "unknown template parameter `:amout`", ":amout", ":amout"),
    ("unknown_name", "unknown template parameter `{leed}`", "{leed}", "{leed}"),
    ("unknown_name", "unknown template parameter `params.ownr`", "params.ownr", "params.ownr"),
    ("unknown_action", "unknown action `reopen_invoce`", "reopen_invoce", "reopen_invoce"),
    ("action_params", "inverse action `approve_invoice` has no parameter `notes`", "notes", "notes"),
    ("action_params", "expects Employee, but `params.reason` is string", "params.reason", "params.reason"),
    ("action_params", "inverse action `unassign_in_crm` needs parameter `reason`", "unassign_in_crm", None),
])
def test_binding_errors_point_at_the_offending_text(broken, code, fragment, needle, text_underlined):
    diags, actions, _ = broken
    d = find(diags, code, fragment)
    assert d.span is not None and d.span.file.endswith("actions.yaml")
    assert (d.span.line, d.span.col) == at(actions, needle), d
    if text_underlined is not None:
        assert underlined(d, actions) == text_underlined
    assert d.message == d.message.lower()[:1] + d.message[1:]  # lower-case start, no final period
    assert not d.message.endswith(".")


def test_unknown_names_come_with_a_suggestion(broken):
    diags, _, _ = broken
    assert find(diags, "unknown_name", "connector `kgg`").suggestion == "kg"
    assert find(diags, "unknown_name", "`?aprover`").suggestion == "approver"
    assert find(diags, "unknown_name", "`?invioce`").suggestion == "invoice"
    assert find(diags, "unknown_name", "`:amout`").suggestion == "amount"
    assert find(diags, "unknown_name", "`{leed}`").suggestion == "lead"
    assert "did you mean" in (find(diags, "unknown_action", "`reopen_invoce`").help or "")


def test_a_colon_inside_sql_quotes_is_still_a_bind_and_the_help_says_how_to_escape_it(broken):
    """SQLAlchemy's `text()` binds `:name` even inside quotes: the check says what would happen."""
    diags, actions, _ = broken
    d = find(diags, "unknown_name", "`:not_a_bind`")
    assert (d.span.line, d.span.col) == at(actions, ":not_a_bind") and "\\:" in d.help


def test_connector_declarations_are_checked_where_they_are(broken):
    diags, _, toml = broken
    crm = find(diags, "config", "connector `crm` (http) needs `base_url`")
    assert crm.span.file.endswith("rulebridge.toml") and crm.span.line == at(toml, "[connectors.crm]")[0]
    mainframe = find(diags, "config", "unknown kind `mainframe`")
    assert mainframe.span.line == at(toml, "[connectors.ticketing]")[0]


def test_every_problem_of_the_file_is_reported(broken):
    diags, _, _ = broken
    assert len([d for d in diags if d.span and d.span.file.endswith("actions.yaml")]) == 13


def test_building_refuses_a_declaration_that_cannot_work():
    with pytest.raises(ConnectorConfigError) as info:
        build_connectors({"connectors": {"crm": {"kind": "http"}}}, None, workspace().actions)
    assert info.value.code == "connector_config" and "base_url" in str(info.value)
    with pytest.raises(ConnectorConfigError, match="needs the workspace graph") as info:
        build_connectors({}, None, workspace().actions)
    assert info.value.code == "connector_config"
    with pytest.raises(ConnectorConfigError, match="`retries` must be a number") as info:
        build_connectors({"connectors": {"kg": {"kind": "kg", "retries": "many"}}}, workspace().store,
                         workspace().actions)
    assert info.value.code == "connector_config"


def test_the_old_string_inverse_takes_parameters_by_name(tmp_path):
    root = tmp_path
    (root / "rules").mkdir()
    (root / "rulebridge.toml").write_text(TOML.split("[connectors.erp]")[0], encoding="utf-8")
    (root / "rules" / "actions.yaml").write_text("""
actions:
  hold:
    description: Hold.
    params: {invoice: Invoice, reason: string}
    inverse: release
  release:
    description: Release.
    params: {invoice: Invoice}
""", encoding="utf-8")
    ws = load_workspace(root, load_graph=False)
    assert not ws.errors, ws.errors
    hold = ws.actions.actions["hold"]
    assert hold.execute is None  # not bound: nothing can execute it
    assert hold.inverse.derive({"invoice": "urn:i", "reason": "r"}) == {"invoice": "urn:i"}


def test_the_repository_declares_the_graph_connector():
    assert declared(workspace().config) == {"kg": {"kind": "kg"}}


def test_a_graph_template_part_cannot_add_operations_of_its_own(tmp_path):
    """`insert: ... } ; DROP ALL ; INSERT DATA { ...` is valid SPARQL once composed: refused at load."""
    from engine.act.connectors.registry import check_bindings
    from engine.errors import DiagnosticSink
    from engine.lang.actions import load_actions

    f = tmp_path / "actions.yaml"
    f.write_text("""
actions:
  sneaky:
    description: Closes its own braces.
    params: {invoice: Invoice}
    execute:
      connector: kg
      where: ?invoice a bw:Invoice
      insert: '?invoice bw:p "}" } ; DROP ALL ; INSERT DATA { <urn:a> <urn:b> <urn:c>'
""", encoding="utf-8")
    sink = DiagnosticSink()
    actions = load_actions(f, workspace().schema, sink)
    check_bindings(actions, {}, sink, prefixes=workspace().prefixes)
    [d] = sink.errors
    assert d.code == "query" and "`insert` of the binding of `sneaky` must be one pattern" in d.message
    with pytest.raises(ConnectorConfigError, match="closes more than it opened") as info:
        build_connectors({}, workspace().store, actions)
    assert info.value.code == "connector_config"
