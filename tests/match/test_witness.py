"""Explanations name the element that broke a quantifier: the first line of an invoice that fails
`all(...)` (also through a named sub-expression), or that no element satisfied `any(...)`."""

from __future__ import annotations

import io

from rich.console import Console

from engine.cli.render import render_explanation
from tests.brightwater import engine

CASE = {"type": "invoice.received", "payload": {"invoice": "bwd:INV-10009"}, "as_of": "2026-11-01"}


def _failed(ex, rule_id):
    [t] = [t for t in ex.rules if t.id == rule_id]
    assert not t.matched
    return t.failed


def test_the_first_line_failing_the_three_way_match_is_named():
    ex = engine(None).explain(CASE, llm=False)
    f = _failed(ex, "ap.approve.by_limit")
    assert f.text == "lines_matched"  # a named sub-expression: the witness comes from its `all(...)`
    w = f.witness
    assert w["kind"] == "all" and w["result"] in (False, None)
    lines = [x.iri for x in ex.decision.env["invoice"].props["invoice_lines"]] \
        if "invoice" in ex.decision.env else None
    if lines is not None:
        assert w["element"] == lines[w["index"]]
    # the values are those of that element: a line without a PO line reads no PO price
    assert "l.quantity" in w["values"] and "l.po_line" in w["values"]
    assert (w["values"]["l.po_line"] is None) == (w["values"]["l.po_line.unit_price"] is None)
    buf = io.StringIO()
    render_explanation(Console(file=buf, width=250, no_color=True, soft_wrap=True), ex)
    assert f'first failing element: #{w["index"] + 1} "{w["element"]}"' in buf.getvalue()
    assert ex.to_json()["explanation"][[t.id for t in ex.rules].index("ap.approve.by_limit")]["failed"]["witness"] == w


def test_an_any_no_element_satisfies_reports_how_many_were_tried():
    ex = engine(None).explain(CASE, llm=False)
    candidates = [t.failed for t in ex.rules if t.failed and t.failed.witness and t.failed.witness["kind"] == "any"]
    assert candidates, "some `any(...)` rule fails on this invoice"
    w = candidates[0].witness
    assert w["tried"] >= 1 and " for " not in w["test"]


def test_a_condition_without_a_quantifier_has_no_witness():
    ex = engine(None).explain(CASE, llm=False)
    plain = [t.failed for t in ex.rules if t.failed and "any(" not in t.failed.text and "all(" not in t.failed.text
             and t.failed.text != "lines_matched" and "approvers" not in t.failed.text]
    assert plain and all(f.witness is None for f in plain)
