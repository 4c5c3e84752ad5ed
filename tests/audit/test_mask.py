"""Masking personal data (`engine/audit/mask.py`): paths, purity, load diagnostics, and the
guarantee that a masked value never reaches the database."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from engine.audit import AuditLog, Masker
from engine.audit.log import audit_events
from engine.audit.mask import REDACTED, parse_path
from engine.errors import LoadError, render_text
from tests.audit.helpers import KEY

WORKSPACE_RULES = Path(__file__).parent / "fixtures" / "audit.yaml"
BW = "https://brightwater.example/ontology#"
EMAIL = "leah.haddad@brightwater.example"


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def masker(text: str) -> Masker:
    return Masker.load("audit.yaml", text=text)


def test_paths_globs_quotes_and_deep_segments():
    m = masker('''
mask:
  - {path: case.payload.contact_email, how: hash}
  - {path: "facts.*.email", how: redact}
  - {path: 'facts."case.lead.name"', how: redact}
  - {path: "lines.1.note", how: redact}
  - {path: "**.phone", how: redact}
  - {path: "prov.*.o", how: hash, where: {p: ["*#email", "*#phone"]}}
''')
    data = {
        "case": {"payload": {"contact_email": "a@b.example", "amount": 5}},
        "facts": {"emp": {"email": "e@x", "name": "E"}, "cust": {"email": None}, "case.lead.name": "Bob",
                  "case.lead": {"name": "not this one"}},
        "lines": [{"note": "first"}, {"note": "second"}],
        "deep": [{"phone": "1"}, {"x": {"phone": 2}}], "phone": "top",
        "prov": [{"p": "bw#email", "o": "e@x"}, {"p": "bw#role", "o": "ceo"}, {"p": "bw#phone", "o": 42}],
    }
    before = copy.deepcopy(data)
    out = m.apply(data)
    assert data == before  # pure: the input is untouched
    assert out == {
        "case": {"payload": {"contact_email": sha("a@b.example"), "amount": 5}},
        "facts": {"emp": {"email": REDACTED, "name": "E"}, "cust": {"email": None}, "case.lead.name": REDACTED,
                  "case.lead": {"name": "not this one"}},
        "lines": [{"note": "first"}, {"note": REDACTED}],
        "deep": [{"phone": REDACTED}, {"x": {"phone": REDACTED}}], "phone": REDACTED,
        "prov": [{"p": "bw#email", "o": sha("e@x")}, {"p": "bw#role", "o": "ceo"}, {"p": "bw#phone", "o": sha("42")}],
    }
    assert out["lines"][0] is data["lines"][0]  # untouched branches are shared, not copied


def test_a_masked_subtree_is_hashed_as_canonical_json():
    out = masker('mask: [{path: "a", how: hash}, {path: "b", how: redact}]').apply({"a": {"y": 1, "x": [2]},
                                                                                    "b": [1, 2], "c": 3})
    assert out == {"a": sha('{"x":[2],"y":1}'), "b": REDACTED, "c": 3}


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["email", "name", "x", "a.b"]), inner, max_size=3), max_leaves=15))
def test_masking_is_pure_and_leaves_no_email_behind(value):
    m = masker('mask: [{path: "**.email", how: redact}]')
    data = {"root": value}
    before = copy.deepcopy(data)
    out = m.apply(data)
    assert data == before

    def emails(node):
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "email" and v is not None] + [
                e for v in node.values() for e in emails(v)]
        if isinstance(node, list):
            return [e for v in node for e in emails(v)]
        return []

    assert all(v == REDACTED for v in emails(out))
    assert m.apply(out) == out  # idempotent for redaction


KEYS = ["email", "name", "a.b", "p", "o", 'q"t', "é", "0", "1"]
json_trees = st.recursive(st.none() | st.integers(0, 3) | st.sampled_from(["x", "e@x", "*#email", "a.b"]),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                                       max_size=4), max_leaves=20)
PATHS = ["email", "**.email", "*.email", 'x."a.b"', '"a.b".*', "*.0.name", "**.o", "p.*", "*", "**.q?t",
         '"*e*"', "é.*.o", "**.1", '"a.*"', '"*.b"']


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(KEYS + ["x"]), json_trees, max_size=4),
       rules=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["hash", "redact"]),
                                st.sampled_from([None, "p: \"*#email\"", "p: x", "o: [e@x, x]", "o: \"3\"",
                                                 "p: [x, \"1\"]", "email: \"null\"", "o: '\"x\"'"])),
                      min_size=1, max_size=5))
def test_skipping_rules_by_their_keys_never_changes_the_result(data, rules):
    from functools import reduce

    from engine.audit.mask import _walk

    lines = []
    for path, how, where in rules:
        lines.append(f"  - {{path: '{path}', how: {how}" + (f", where: {{{where}}}}}" if where else "}"))
    m = masker("mask:\n" + "\n".join(lines) + "\n")
    reference = reduce(lambda d, r: _walk(d, r, 0), m.rules, data)  # every rule walks the data
    assert m.apply(data) == reference


def test_the_workspace_rules_load_and_mask_brightwater_personal_data():
    m = Masker.load(WORKSPACE_RULES)
    assert len(m) >= 8
    facts_event = {
        "facts": {"case.approver.email": EMAIL, "case.approver.name": "Leah Haddad",
                  "case.lead.company_name": "Clara Lindqvist", "case.invoice.amount": 420,
                  "case.invoice.vendor.name": "Acme Industrial"},
        "provenance": [
            {"s": "https://brightwater.example/id/EMP-001", "p": BW + "email", "o": EMAIL, "g": ""},
            {"s": "https://brightwater.example/id/EMP-001", "p": BW + "name", "o": "Leah Haddad", "g": ""},
            {"s": "https://brightwater.example/id/V-1001", "p": BW + "name", "o": "Acme Industrial", "g": ""},
            {"s": "https://brightwater.example/id/LEAD-4006", "p": BW + "company_name", "o": "Clara Lindqvist",
             "g": ""},
        ]}
    out = m.apply(facts_event)
    assert out["facts"] == {"case.approver.email": sha(EMAIL), "case.approver.name": REDACTED,
                            "case.lead.company_name": REDACTED, "case.invoice.amount": 420,
                            "case.invoice.vendor.name": "Acme Industrial"}
    assert [t["o"] for t in out["provenance"]] == [sha(EMAIL), REDACTED, "Acme Industrial", REDACTED]
    received = {"case": {"type": "lead.created", "payload": {"lead": "bwd:LEAD-1", "contact_email": "c@x.example",
                                                             "contact_phone": "+1 555 0100"}}}
    assert m.apply(received)["case"]["payload"] == {"lead": "bwd:LEAD-1", "contact_email": sha("c@x.example"),
                                                    "contact_phone": REDACTED}


def test_masked_values_never_reach_the_database(sql_url, tmp_path):
    secret_email, secret_name = "grace.hopper@brightwater.example", "Grace Brewster Hopper"
    data = {"case": {"type": "lead.created", "payload": {"lead": "bwd:LEAD-9", "contact_email": secret_email,
                                                         "contact_name": secret_name}},
            "provenance": [{"s": "https://brightwater.example/id/EMP-042", "p": BW + "email", "o": secret_email}]}
    with AuditLog(sql_url, masker=Masker.load(WORKSPACE_RULES), hmac_key=KEY) as log:
        event = log.append("D-1", "received", "ops", data)
        log.append_many([("D-1", "facts", "ops", data), ("D-1", "decided", "ops", {"note": secret_name})])
        assert secret_email not in str(event.data) and secret_name not in str(event.data)
        assert event.data["case"]["payload"]["contact_email"] == sha(secret_email)
        assert log.verify().ok  # the chain covers the masked form
        with log.db.connect() as c:
            stored = " ".join(str(v) for row in c.execute(select(audit_events)) for v in row)
        assert secret_email not in stored
        assert stored.count(secret_name) == 1  # only where no rule masks it: the free-text note
        assert sha(secret_email) in stored
    if sql_url.startswith("sqlite"):  # nothing in the database file or its write-ahead log either
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
        assert secret_email.encode() not in raw and raw.count(secret_name.encode()) == 1


def test_load_errors_point_at_file_line_and_column(tmp_path):
    f = tmp_path / "audit.yaml"
    f.write_text('mask:\n'
                 '  - {path: "case..email", how: hash}\n'
                 '  - {path: case.email, how: hsh}\n'
                 '  - {path: case.email, how: redact, wher: {p: x}}\n'
                 '  - {how: redact}\n'
                 '  - {path: "a.**", how: redact}\n'
                 'masks: []\n', encoding="utf-8")
    with pytest.raises(LoadError) as exc:
        Masker.load(f)
    got = [(d.code, d.span.line, d.span.col, d.message, d.help) for d in exc.value.diagnostics]
    assert got == [
        ("schema", 2, 18, "invalid mask path `case..email`: a segment is empty or has spaces around it",
         got[0][4]),
        ("schema", 3, 29, "unknown way to mask `hsh`", "did you mean `hash`?"),
        ("schema", 4, 37, "unknown key `wher` in a mask rule", "did you mean `where`?"),
        ("schema", 5, 5, "a mask rule needs `path`", "e.g. `{path: case.payload.contact_email, how: hash}`"),
        ("schema", 6, 15, ("invalid mask path `a.**`: a path cannot end with `**`; name what to mask, e.g. "
          "`**.email`"), got[4][4]),
        ("schema", 7, 1, "unknown key `masks` in the audit file", "did you mean `mask`?"),
    ]
    text = render_text(exc.value.diagnostics)
    assert f"{f}:3:29: error[schema]: unknown way to mask `hsh`" in text
    assert "   3 |   - {path: case.email, how: hsh}\n" + " " * 35 + "^^^" in text


def test_yaml_syntax_errors_and_wrong_shapes_are_diagnostics(tmp_path):
    cases = {"mask: [\n": ("yaml_syntax", 2, 1), "- a\n- b\n": ("schema", 1, 1),
             "mask: {a: 1}\n": ("schema", 1, 7), "mask:\n  - just text\n": ("schema", 2, 5),
             "mask:\n  - {path: a, how: hash, where: [p]}\n": ("schema", 2, 33),
             "mask:\n  - {path: [a], how: hash}\n": ("schema", 2, 12)}
    for text, (code, line, col) in cases.items():
        f = tmp_path / "audit.yaml"
        f.write_text(text, encoding="utf-8")
        with pytest.raises(LoadError) as exc:
            Masker.load(f)
        d = exc.value.diagnostics[0]
        assert (d.code, d.span.file, d.span.line, d.span.col) == (code, str(f), line, col), (text, d)
    with pytest.raises(LoadError) as exc:
        Masker.load(tmp_path / "missing.yaml")
    assert exc.value.diagnostics[0].code == "yaml_syntax"


def test_overlapping_rules_mask_a_value_once():
    m = masker('mask: [{path: a.email, how: hash}, {path: "**.email", how: hash}, {path: "**.name", how: redact},'
               ' {path: "a.name", how: redact}]')
    assert m.apply({"a": {"email": "x@y", "name": "N"}}) == {"a": {"email": sha("x@y"), "name": REDACTED}}


def test_an_empty_file_masks_nothing():
    assert len(masker("")) == 0 and masker("mask: []").apply({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("path, segments", [
    ("a.b", ["a", "b"]), ('a."b.c".d', ["a", "b.c", "d"]), ("**.x", ["**", "x"]), ("a.*.0", ["a", "*", "0"]),
])
def test_parse_path(path, segments):
    segs, problem = parse_path(path)
    assert problem is None and [s.text for s in segs] == segments


@pytest.mark.parametrize("path, index", [("", 0), ("a.", 1), (".a", 0), ('a."b', 2), ('a"b', 1), ('"b"c', 3),
                                         ("a. b", 2), ("**", 0)])
def test_parse_path_errors_name_the_character(path, index):
    _segs, problem = parse_path(path)
    assert problem is not None and problem[0] == index


def test_open_audit_log_applies_the_workspace_rules(tmp_path, sql_url, monkeypatch):
    from engine.audit import open_audit_log

    ws = tmp_path / "ws"
    (ws / "rules").mkdir(parents=True)
    monkeypatch.delenv("RULEBRIDGE_AUDIT_URL", raising=False)
    monkeypatch.setenv("RULEBRIDGE_AUDIT_HMAC_KEY", KEY.decode())
    (ws / "rulebridge.toml").write_text(f'[audit]\nurl = "{sql_url}"\n')
    with open_audit_log(ws) as log:  # no rules/audit.yaml: nothing is masked
        assert log.masker is None and log.hmac_key == KEY
        assert log.append("D-1", "s", "ops", {"contact_email": "x@y"}).data == {"contact_email": "x@y"}
    (ws / "rules" / "audit.yaml").write_text(WORKSPACE_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    with open_audit_log(ws) as log:
        e = log.append("D-2", "received", "ops", {"case": {"payload": {"contact_email": "x@y"}}})
        assert e.data == {"case": {"payload": {"contact_email": sha("x@y")}}}
        assert log.verify().ok
    (ws / "rules" / "audit.yaml").write_text("mask:\n  - {path: a, how: nope}\n", encoding="utf-8")
    with pytest.raises(LoadError) as exc:
        open_audit_log(ws)
    d = exc.value.diagnostics[0]
    assert (d.span.file, d.span.line, d.span.col) == (str((ws / "rules" / "audit.yaml").resolve()), 2, 20)
    assert d.code == "schema" and exc.value.code == "schema"
    (ws / "rulebridge.toml").write_text(f'[audit]\nurl = "{sql_url}"\nmask = "rules/missing.yaml"\n')
    with pytest.raises(LoadError) as exc:  # a file the configuration names must exist
        open_audit_log(ws)
    assert exc.value.code == "yaml_syntax"
