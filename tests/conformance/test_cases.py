"""The conformance runner: every `tests/cases/*.yaml` through all three matchers.

A case file is data (one behaviour per file):

    note: what the behaviour is and why
    xfail: "BUG: ..."     # optional: a known engine bug; the file must fail until it is fixed
    ruleset: |            # the YAML text of one rule file, compiled against tests/fixtures/mini
      ruleset: ...
    files: {name.csv: "..."}   # optional: files written beside it (decision tables)
    want_errors:          # optional: every diagnostic the file gets, exactly (sorted by position)
      - {code: unknown_property, line: 9, col: 16, severity: error, help: "did you mean `status`?"}
    cases:                # optional: payloads and the decision they must get
      - payload: {invoice: "ex:I1"}
        as_of: 2026-11-01           # optional; the engine clock is 2026-11-01
        want_outcome: execute
        want_rules: [ids]           # every matched rule, in ruleset order
        want_deciding: [ids]
        want_action: approve_invoice   # or null: no proposal
        want_params: {approver: "ex:P2"}   # a subset; IRIs may use the workspace prefixes
        want_reason: rule
        want_guards: [ids]
        want_message: text the decision message contains
        want_error: case_unknown_entity   # or: the case is refused with this code before any rule runs

Without `want_errors` the file must compile with no diagnostic at all. Every case is
decided by `Engine(ws, matcher=...)` with `durable`, `index` and `reference`, and the three
decisions must be identical before they are compared with the wants.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from engine.errors import CaseError
from engine.lang.checker import expand_iri
from engine.lang.semantics import to_json_value
from tests.rulesets import compile_ruleset, engine_for, mini_workspace

CASES_DIR = Path(__file__).parent.parent / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))
FILE_KEYS = {"note", "ruleset", "files", "want_errors", "cases", "xfail"}
CASE_KEYS = {"payload", "as_of", "note", "want_outcome", "want_rules", "want_deciding", "want_action",
             "want_params", "want_reason", "want_guards", "want_message", "want_error"}
ERROR_KEYS = {"code", "line", "col", "severity", "message", "help"}


def _load(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(spec, dict) and set(spec) <= FILE_KEYS, f"{path.name}: unknown keys {set(spec) - FILE_KEYS}"
    assert spec.get("note"), f"{path.name}: every case file says what it is about in `note`"
    assert "ruleset" in spec and ("cases" in spec or "want_errors" in spec), path.name
    return spec


def _expand(value, prefixes):
    if isinstance(value, str):
        return expand_iri(value, prefixes)
    if isinstance(value, list):
        return [_expand(v, prefixes) for v in value]
    return value


def _summary(d) -> dict:
    """Everything observable about a decision except ids and timings."""
    j = d.to_json()
    return {k: j[k] for k in ("outcome", "source", "reason", "message", "proposals", "rules_matched",
                              "rules_deciding", "guards", "rule_revision", "graph_revision", "as_of")}


def test_there_are_enough_case_files():
    assert len(CASE_FILES) >= 25


def _params():
    for p in CASE_FILES:
        reason = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(p, id=p.stem, marks=marks)


@pytest.mark.parametrize("path", list(_params()))
def test_case(path: Path, tmp_path: Path):
    spec = _load(path)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name, content in (spec.get("files") or {}).items():
        (rules_dir / name).write_text(content, encoding="utf-8")
    rule_file = rules_dir / f"{path.stem}.yaml"
    rule_file.write_text(spec["ruleset"], encoding="utf-8")
    rs, sink = compile_ruleset(None, rule_file)

    got = [{"code": d.code, "line": d.span.line if d.span else 0, "col": d.span.col if d.span else 0,
            "severity": d.severity.value, "message": d.message, "help": d.help}
           for d in sorted(sink.items, key=lambda d: d.sort_key())]
    want_errors = spec.get("want_errors") or []
    for w in want_errors:
        assert set(w) <= ERROR_KEYS and {"code", "line", "col"} <= set(w), w
    # every diagnostic, exactly: code and position always; severity, message and help where given
    # (the counts are compared after, so that a mismatch shows the diagnostics)
    assert [{k: g[k] for k in w} | {"severity": g["severity"]} for g, w in zip(got, want_errors, strict=False)] == \
        [w | {"severity": w.get("severity", "error")} for w in want_errors], got
    assert len(got) == len(want_errors), got

    cases = spec.get("cases") or []
    if not cases:
        return
    assert rs is not None and not sink.errors, f"{path.name}: the ruleset has errors: {got}"
    durable, index, reference = engine_for(rs, "durable"), engine_for(rs, "index"), engine_for(rs, "reference")
    prefixes = mini_workspace().prefixes
    for i, case in enumerate(cases):
        assert set(case) <= CASE_KEYS, f"case {i}: unknown keys {set(case) - CASE_KEYS}"
        as_of = case.get("as_of")
        request = {"type": rs.case_type, "payload": case.get("payload") or {}}
        if as_of is not None:
            request["as_of"] = as_of.isoformat() if isinstance(as_of, dt.date) else str(as_of)
        where = f"{path.name} case {i} ({case.get('note') or request['payload']})"
        if "want_error" in case:  # refused before any rule runs, by every matcher alike
            for eng in (durable, index, reference):
                with pytest.raises(CaseError) as info:
                    eng.decide(request)
                assert info.value.code == case["want_error"], f"{where}: {info.value}"
            continue
        d_durable = durable.decide(request)
        d_reference = reference.decide(request)
        d_index = index.decide(request)
        assert durable.matcher_for(rs).stats["fallbacks"] == 0, f"{where}: durable-rules fell back"
        assert _summary(d_durable) == _summary(d_reference), f"{where}: the matchers disagree"
        assert _summary(d_index) == _summary(d_reference), f"{where}: the index matcher disagrees"
        d = d_durable
        if "want_outcome" in case:
            assert d.outcome == case["want_outcome"], f"{where}: {d.outcome} ({d.reason}: {d.message})"
        if "want_rules" in case:
            assert d.matched == case["want_rules"], where
        if "want_deciding" in case:
            assert d.deciding == case["want_deciding"], where
        if "want_action" in case:
            want = case["want_action"]
            assert [p.action for p in d.proposals] == ([] if want is None else
                                                       want if isinstance(want, list) else [want]), where
        if "want_params" in case:
            assert d.proposals, f"{where}: no proposal"
            params = to_json_value(d.proposals[0].params)
            for k, v in case["want_params"].items():
                assert k in params, f"{where}: no parameter `{k}` in {params}"
                assert params[k] == _expand(v, prefixes), f"{where}: parameter `{k}`"
        if "want_reason" in case:
            assert d.reason == case["want_reason"], f"{where}: {d.reason}: {d.message}"
        if "want_guards" in case:
            assert [g.id for g in d.guards] == case["want_guards"], where
        if "want_message" in case:
            assert case["want_message"] in d.message, f"{where}: {d.message!r}"
