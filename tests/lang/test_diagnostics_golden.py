"""Golden tests of diagnostics as analysts read them (`engine.errors.render_text`).

Each `golden/NAME.yaml` is a broken rule file compiled against the mini fixture workspace;
`golden/NAME.expected` is the exact rendered text: `file:line:col: error[code]: message`,
the source line, the caret under the offending text and the help line. Paths are shown
relative to the repository root. Regenerate after a deliberate change with

    UPDATE_GOLDEN=1 python -m pytest tests/lang/test_diagnostics_golden.py

and review the diff. Also here: a malformed rule file never makes `load_workspace` raise.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest

from engine.errors import CODES, Diagnostic, render_text
from engine.workspace import load_workspace
from tests.rulesets import MINI, compile_ruleset

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent.parent
GOLDEN_FILES = sorted(GOLDEN.glob("*.yaml"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _relative(diags: list[Diagnostic]) -> tuple[list[Diagnostic], dict[str, str]]:
    """Diagnostics with file paths relative to the repository root, and the sources they point into."""
    out, sources = [], {}
    for d in diags:
        if d.span and d.span.file:
            p = Path(d.span.file)
            rel = p.resolve().relative_to(ROOT).as_posix() if p.resolve().is_relative_to(ROOT) else p.as_posix()
            if p.exists():
                sources[rel] = p.read_text(encoding="utf-8")
            d = dataclasses.replace(d, span=dataclasses.replace(d.span, file=rel))
        out.append(d)
    return out, sources


def diagnostics_of(path: Path) -> tuple[list[Diagnostic], dict[str, str]]:
    _rs, sink = compile_ruleset(None, path)
    return _relative(sink.items)


def test_golden_files_exist():
    assert len(GOLDEN_FILES) >= 10


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_rendered_diagnostics_match_golden(path: Path):
    diags, sources = diagnostics_of(path)
    assert diags, f"{path.name} is meant to be broken"
    text = render_text(diags, sources=sources) + "\n"
    expected = path.with_suffix(".expected")
    if UPDATE:
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"no golden file; run with UPDATE_GOLDEN=1 to create {expected.name}"
    assert text == expected.read_text(encoding="utf-8")


# The names a diagnostic complains about, and the text its caret must underline.
_NAMED = {
    "unknown_property": re.compile(r"has no property `([^`]+)`"),
    "unknown_name": re.compile(r"^unknown (?:name|field|function|query|type) `([^`]+)`"),
    "table_syntax": re.compile(r"^priority `([^`]+)` is not a whole number"),
    "unknown_action": re.compile(r"^unknown action `([^`]+)`"),
    "duplicate_id": re.compile(r"^duplicate (?:rule|guard|test) id `([^`]+)`"),
}


def _underlined(d: Diagnostic, sources: dict[str, str]) -> str:
    line = sources[d.span.file].splitlines()[d.span.line - 1]
    return line[d.span.col - 1:d.span.end_col - 1]


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_carets_underline_exactly_the_name_complained_about(path: Path):
    diags, sources = diagnostics_of(path)
    checked = 0
    for d in diags:
        rx = _NAMED.get(d.code)
        m = rx.search(d.message) if rx else None
        if m and d.span and d.span.end_line == d.span.line:
            assert _underlined(d, sources).strip("\"'") == m.group(1), d
            checked += 1
    if path.stem in ("unknown_property", "unknown_names", "actions", "duplicates"):
        assert checked >= 1


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_every_diagnostic_is_well_formed(path: Path):
    diags, _sources = diagnostics_of(path)
    for d in diags:
        assert d.code in CODES, d
        assert d.message and (d.message[0].islower() or d.message[0] == "`"), d
        assert not d.message.endswith("."), d
        assert "Error" not in d.message and "Exception" not in d.message, d
        assert d.span is not None and d.span.line >= 1 and d.span.col >= 1, d
        if d.suggestion:
            assert d.help and f"`{d.suggestion}`" in d.help, d
    rendered = render_text(diags, sources=_sources)
    positions = [tuple(map(int, m.groups())) for m in re.finditer(r"^\S+?:(\d+):(\d+): ", rendered, re.M)]
    assert positions == sorted(positions)


# -- positions inside quoted, escaped and multi-line YAML scalars ------------------------------------

HEAD = """ruleset: golden.positions
on: invoice.received
case: {invoice: Invoice}
facts:
  vendor: case.invoice.vendor
rules:
  - id: a
    then: {no_action: x}
    when:
"""


def _caret(tmp_path: Path, when_item: str) -> tuple[int, str]:
    f = tmp_path / "r.yaml"
    f.write_text(HEAD + when_item, encoding="utf-8")
    _rs, sink = compile_ruleset(None, f)
    [d] = [d for d in sink.items if d.code == "unknown_property"]
    lines = f.read_text(encoding="utf-8").splitlines()
    return d.span.line, lines[d.span.line - 1][d.span.col - 1:d.span.end_col - 1]


@pytest.mark.parametrize("item", [
    '      - vendor.statsu == "x"\n',
    "      - 'vendor.statsu == \"x\"'\n",
    '      - "vendor.statsu == \'x\'"\n',
    '      - "vendor.name == \'a\' and vendor.statsu == \'x\'"\n',
])
def test_caret_in_plain_and_quoted_scalars(tmp_path, item):
    _line, text = _caret(tmp_path, item)
    assert text == "statsu"


@pytest.mark.parametrize("item", [
    '      - "vendor.name == \\"Acme\\" and vendor.statsu == \'x\'"\n',
    "      - 'vendor.name == ''Acme'' and vendor.statsu == \"x\"'\n",
])
def test_caret_after_escapes_in_quoted_scalars(tmp_path, item):
    _line, text = _caret(tmp_path, item)
    assert text == "statsu"


@pytest.mark.parametrize("item", [
    "      - vendor.name == 'x' and\n        vendor.statsu == 'y'\n",
    "      - >\n        vendor.name == 'x' and\n        vendor.statsu == 'y'\n",
    "      - >-\n        vendor.statsu == 'y'\n",
    "      - |-\n        vendor.statsu == 'y'\n",
])
def test_caret_in_multi_line_scalars(tmp_path, item):
    line, text = _caret(tmp_path, item)
    assert (line, text) == (HEAD.count("\n") + item.count("\n"), "statsu")


def test_table_header_error_points_at_the_header(tmp_path):
    (tmp_path / "t.csv").write_text("id,vendor.staus,then,message\nt.a,approved,escalate,x\nt.b,blocked,escalate,y\n",
                                    encoding="utf-8")
    f = tmp_path / "r.yaml"
    f.write_text("ruleset: t\non: invoice.received\ncase: {invoice: Invoice}\nfacts:\n  vendor: case.invoice.vendor\n"
                 "decision_table: t.csv\n", encoding="utf-8")
    _rs, sink = compile_ruleset(None, f)
    diags, sources = _relative(sink.items)
    assert [(d.code, d.span.line, _underlined(d, sources)) for d in diags] == [("unknown_property", 1, "staus")]


def test_table_cell_error_stays_in_its_cell(tmp_path):
    (tmp_path / "t.csv").write_text("id,case.invoice.amount,then,message\nt.a,<= abc,escalate,x\n", encoding="utf-8")
    f = tmp_path / "r.yaml"
    f.write_text("ruleset: t\non: invoice.received\ncase: {invoice: Invoice}\ndecision_table: t.csv\n",
                 encoding="utf-8")
    _rs, sink = compile_ruleset(None, f)
    diags, sources = _relative(sink.items)
    assert [(d.code, _underlined(d, sources)) for d in diags] == [("type_mismatch", "<= abc")]


def test_a_duplicate_rule_is_still_checked(tmp_path):
    """Regression: the second rule with an id was skipped whole, so its own mistakes surfaced only
    after the duplicate was renamed (every error of a file is reported at once)."""
    f = tmp_path / "r.yaml"
    f.write_text("ruleset: t\non: invoice.received\ncase: {invoice: Invoice}\nrules:\n"
                 "  - id: a\n    when: case.invoice.amount > 1\n    then: {no_action: x}\n"
                 "  - id: a\n    when: case.invoice.amount >\n    then: {no_action: y}\n", encoding="utf-8")
    _rs, sink = compile_ruleset(None, f)
    assert [(d.code, d.span.line) for d in sink.items] == [("duplicate_id", 8), ("expr_syntax", 9)]


@pytest.mark.parametrize("cell", ["<< 100", ">=> 5", "<= = 3"])
def test_a_doubled_comparison_in_a_cell_is_a_syntax_error(tmp_path, cell):
    """Regression: `<< 100` read as `< "< 100"` (a comparison with text) and was reported as a
    type mismatch, not as the typo it is."""
    (tmp_path / "t.csv").write_text(f"id,case.invoice.amount,then,message\nt.a,{cell},escalate,x\n", encoding="utf-8")
    f = tmp_path / "r.yaml"
    f.write_text("ruleset: t\non: invoice.received\ncase: {invoice: Invoice}\ndecision_table: t.csv\n",
                 encoding="utf-8")
    _rs, sink = compile_ruleset(None, f)
    diags, sources = _relative(sink.items)
    assert [(d.code, d.span.line) for d in diags] == [("expr_syntax", 2)]
    assert _underlined(d := diags[0], sources) and d.span.col > len("t.a,")  # the caret is in the cell


@pytest.mark.parametrize("when,codes", [
    ('[case.invoice.amount = 5]', ["expr_syntax"]),
    ('[case.invoice.amount > "x"]', ["type_mismatch"]),
    ("['case.invoice.lines[0].amount > 1']", ["expr_forbidden"]),
    ('[case.since < "yesterday"]', ["type_mismatch"]),
])
def test_one_mistake_one_diagnostic(tmp_path, when, codes):
    f = tmp_path / "r.yaml"
    f.write_text("ruleset: t\non: invoice.received\ncase: {invoice: Invoice, since: date}\nrules:\n"
                 f"  - id: broken\n    priority: 9\n    when: {when}\n    then: {{no_action: x}}\n"
                 "  - id: fine\n    when: case.invoice.amount > 1\n    then: {no_action: y}\n", encoding="utf-8")
    _rs, sink = compile_ruleset(None, f)
    assert [d.code for d in sink.items] == codes, sink.items


# -- a malformed file never raises -------------------------------------------------------------------

RS = "ruleset: p\non: invoice.received\ncase: {invoice: Invoice}\n"
PATHOLOGICAL: dict[str, str | bytes] = {
    "empty": "",
    "only_whitespace": "  \n\n\t\n",
    "only_comment": "# nothing here\n",
    "list_at_top": "- a\n- b\n",
    "scalar_at_top": "hello\n",
    "number_at_top": "42\n",
    "binary_garbage": b"\x00\xff\xfe\x89PNG\r\n\x1a\n\x00\x00\xc3\x28",
    "latin1_bytes": b"ruleset: caf\xe9\non: x\n",
    "tabs_for_indent": "ruleset: p\n\ton: x\n",
    "rule_is_a_string": RS + "rules:\n  - just a string\n",
    "rule_is_a_list": RS + "rules:\n  - [a, b]\n",
    "when_is_a_number": RS + "rules:\n  - id: a\n    when: 5\n    then: {no_action: x}\n",
    "when_items_not_text": RS + "rules:\n  - id: a\n    when: [5, null, true, {a: b}, [1], 1.5]\n"
                                "    then: {no_action: x}\n",
    "deeply_nested_nonsense": RS + "rules:\n  - id: {a: [{b: {c: [[[]]]}}]}\n    when: {x: {y: [1, {z: null}]}}\n"
                                   "    then: [[{}]]\n",
    "deep_flow_lists": RS + "rules: " + "[" * 200 + "]" * 200 + "\n",
    "deep_flow_maps": RS + "facts: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
    "rules_is_a_map": RS + "rules: {a: 1}\n",
    "rules_is_null": RS + "rules:\n",
    "id_and_priority_wrong": RS + "rules:\n  - id: 12\n    priority: high\n    when: []\n    then: {no_action: x}\n",
    "then_is_a_string": RS + "rules:\n  - id: a\n    then: approve\n",
    "then_has_two_kinds": RS + "rules:\n  - id: a\n    then: {action: hold_invoice, escalate: x}\n",
    "params_is_a_list": RS + "rules:\n  - id: a\n    then: {action: hold_invoice, params: [1, 2]}\n",
    "param_is_a_map": RS + "rules:\n  - id: a\n"
                           "    then: {action: hold_invoice, params: {invoice: {a: 1}, reason: [x, {y: 1}]}}\n",
    "case_is_a_list": "ruleset: p\non: x\ncase: [1, 2]\nrules: []\n",
    "case_field_types_wrong": "ruleset: p\non: x\ncase: {a: {b: [c, d]}, e: 5, f: null}\nrules: []\n",
    "alias_fanout": ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"),
    "python_tag": "!!python/object/apply:os.system ['echo hi']\n",
    "set_tag": "ruleset: !!set {a, b}\n",
    "complex_key": "? [a, b]\n: c\n",
    "guards_wrong": RS + "rules: []\nguards:\n  - id: g\n    deny_when: [1]\n    applies_to: {a: b}\n  - 5\n"
                         "  - id: h\n    review_when: 3\n",
    "derived_wrong": RS + "derived:\n  a: ask(1)\n  b: chain()\n  c: within_hops(1, 2, 3, 4)\n"
                          "  d: select(\"no\", x=1)\n"
                          "  e: ask(\"duplicate_invoice\", 1, invoice=case.invoice)\nrules: []\n",
    "odd_expressions": RS + "rules:\n  - id: a\n    when: ['\\x00', '" + "(" * 100 + "', 'a', '1', '\"\" < 1']\n"
                            "    then: {no_action: x}\n",
    "decision_table_missing": RS + "decision_table: nope.csv\n",
    "decision_table_is_a_dir": RS + "decision_table: .\n",
    "tests_wrong": RS + "rules: []\ntests:\n  - name: [a]\n    case: 5\n    expect: [1]\n  - name: b\n    case: {}\n"
                        "    expect: {outcome: [1]}\n",
    "huge_numbers": RS + "rules:\n  - id: a\n    priority: 99999999999999999999999\n"
                         "    when: case.invoice.amount > 1e999\n"
                         "    then: {no_action: x}\n",
    "alias_bomb": "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "1"] * 10) + "]\n" for i in range(8)),
    "deep_flow_lists_beyond_the_stack": RS + "rules: " + "[" * 5000 + "]" * 5000 + "\n",
    "nul_in_expression": RS + 'rules:\n  - id: a\n    when: ["case.invoice.amount > 1\\0"]\n    then: {no_action: x}\n',
    "test_as_of_not_a_date": RS + "rules: []\ntests:\n  - name: t\n    as_of: yesterday\n    case: {invoice: ex:I1}\n"
                                  "    expect: {outcome: escalate}\n",
}


def _load(tmp_path: Path, content: str | bytes):
    ws_dir = tmp_path / "ws"
    shutil.copytree(MINI, ws_dir)
    target = ws_dir / "rules" / "ap.yaml"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    return load_workspace(ws_dir, load_graph=False)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "alias_bomb" else n
                                  for n in PATHOLOGICAL])
def test_malformed_rule_file_never_raises(tmp_path, name):
    ws = _load(tmp_path, PATHOLOGICAL[name])
    for d in ws.diagnostics:
        assert d.code in CODES, d
    render_text(ws.diagnostics)  # renders without raising too
    assert ws.errors, f"{name}: a malformed file loads without an error"


def test_recursive_yaml_alias_is_a_diagnostic(tmp_path):
    ws = _load(tmp_path, "a: &x [*x]\n")
    assert [d.code for d in ws.errors] == ["yaml_syntax"]


@pytest.mark.parametrize("expr", ["not " * 500 + "true", "+".join(["1"] * 600) + " > 0", "-" * 1000 + "1 > 0"])
def test_deeply_nested_condition_is_a_diagnostic(tmp_path, expr):
    ws = _load(tmp_path, RS + f"rules:\n  - id: a\n    when: ['{expr}']\n    then: {{no_action: x}}\n")
    assert ws.errors


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    ws = _load(tmp_path, RS + "rules:\n  - id: a\n    when: case.invoice.amount > 1000\n"
                              "    when: case.invoice.amount > 0\n    then: {no_action: x}\n")
    assert ws.errors


def test_ruleset_and_on_must_be_text(tmp_path):
    ws = _load(tmp_path, "ruleset: [a]\non: {b: c}\ncase: {invoice: Invoice}\nrules: []\n")
    assert ws.errors
