"""Stream files checked at load (`engine.lang.stream`): every problem with its code and position."""

from __future__ import annotations

from pathlib import Path

from engine.errors import DiagnosticSink
from engine.lang.stream import StreamCompiler, check_emits, parse_duration
from engine.lang.types import NUMBER, STRING, Schema, Type

GOOD = """\
stream: t.watch
events:
  changed: {vendor: string, by: string}
  invoiced: {vendor: string, amount: number}
correlations:
  - id: c1
    first: changed
    then: invoiced
    same: [vendor]
    within: 7d
    emits: {case: x.case, payload: {vendor: then.vendor, amount: then.amount}}
"""


def diags(text: str) -> list[tuple[str, int, int, str]]:
    sink = DiagnosticSink()
    StreamCompiler(Path("s.yaml"), Schema(), sink, text=text).compile()
    return [(d.code, d.span.line, d.span.col, d.message) for d in sink.items if d.span is not None]


def test_a_good_stream_compiles():
    sink = DiagnosticSink()
    s = StreamCompiler(Path("s.yaml"), Schema(), sink, text=GOOD).compile()
    assert not sink.items
    assert s is not None
    [c] = s.correlations
    assert (c.pattern, c.prior, c.trigger, c.same, c.window_s) == ("sequence", "changed", "invoiced", ("vendor",),
                                                                   7 * 86400)
    assert c.payload == {"vendor": ("then", "vendor"), "amount": ("then", "amount")}


def test_unknown_event_type_with_suggestion():
    [d] = diags(GOOD.replace("then: invoiced", "then: invoiced_"))
    assert d == ("unknown_name", 8, 11, "unknown event type `invoiced_`")


def test_unknown_field_in_same():
    assert diags(GOOD.replace("same: [vendor]", "same: [vendr]")) == [
        ("unknown_name", 9, 12, "event type `changed` has no field `vendr`"),
        ("unknown_name", 9, 12, "event type `invoiced` has no field `vendr`")]


def test_bad_duration():
    assert diags(GOOD.replace("within: 7d", "within: 7 days")) == [
        ("duration_syntax", 10, 13, "`within: 7 days` is not a duration")]
    assert diags(GOOD.replace("within: 7d", "within: 400d"))[0][0] == "duration_syntax"


def test_same_field_of_different_types():
    text = GOOD.replace("invoiced: {vendor: string", "invoiced: {vendor: number")
    [d] = diags(text)
    assert d[:3] == ("type_mismatch", 9, 12)


def test_unknown_role_field_in_the_payload():
    [d] = diags(GOOD.replace("amount: then.amount", "amount: then.amont"))
    assert d == ("unknown_name", 11, 71, "event type `invoiced` has no field `amont`")


def test_count_must_be_a_whole_number_of_at_least_two():
    text = GOOD.replace("first: changed\n    then: invoiced", "event: invoiced\n    count: 1")
    text = text.replace("then.vendor", "event.vendor").replace("then.amount", "event.amount")
    [d] = diags(text)
    assert d[:3] == ("schema", 8, 12)


def test_a_correlation_without_pattern_and_unknown_keys():
    text = GOOD.replace("    first: changed\n    then: invoiced\n", "    firts: changed\n")
    got = diags(text)
    assert ("schema", 7, 5, "unknown key `firts` in a correlation") in got
    assert any(d[0] == "schema" and "needs a pattern" in d[3] for d in got)


def test_duplicate_correlation_id():
    text = GOOD + GOOD[GOOD.index("  - id: c1"):]
    assert [d[:3] for d in diags(text)] == [("duplicate_id", 12, 5)]


def test_emitted_payload_checked_against_the_case_type():
    sink = DiagnosticSink()
    s = StreamCompiler(Path("s.yaml"), Schema(), sink, text=GOOD).compile()
    assert s is not None
    check_emits([s], {"x.case": Type("object", fields=(("vendor", STRING), ("amount", STRING),
                                                       ("note", STRING)))}, sink)
    got = [(d.code, d.span.line if d.span else 0, d.message) for d in sink.items]
    assert ("type_mismatch", 11, "case field `amount` is string, but `then.amount` is number") in got
    assert any(c == "schema" and "emits no `note`" in m for c, _, m in got)
    sink = DiagnosticSink()
    check_emits([s], {"y.case": Type("object", fields=(("vendor", STRING), ("amount", NUMBER)))}, sink)
    assert [(d.code, d.span.line if d.span else 0) for d in sink.items] == [("no_ruleset", 11)]


def test_durations():
    assert [parse_duration(x) for x in ("45s", "30m", "12h", "7d", "2w", "0d", "7", "d7", "1.5d")] == [
        45, 1800, 43200, 604800, 1209600, None, None, None, None]
