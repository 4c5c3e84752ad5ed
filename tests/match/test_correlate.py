"""Correlations over event streams (`engine.match.correlate`): the three patterns at their window
edges, a differential test against a plain-Python oracle on random streams, and bounded state."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest

from engine.errors import CaseError, DiagnosticSink
from engine.lang.stream import CompiledStream, StreamCompiler
from engine.lang.types import Schema
from engine.match.correlate import Correlator

STREAM = """\
stream: t.watch
events:
  a: {k: string, n: number}
  b: {k: string, n: number}
correlations:
  - id: seq
    first: a
    then: b
    same: [k]
    within: 100s
    emits: {case: x.case, payload: {k: then.k, since: first.at, what: "seq"}}
  - id: three
    event: b
    count: 3
    same: [k]
    within: 100s
    emits: {case: x.case, payload: {k: event.k, since: first.at}}
  - id: new
    event: a
    same: [k]
    within: 100s
    emits: {case: x.case, payload: {k: event.k}}
"""
BASE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def compile_stream(text: str = STREAM) -> CompiledStream:
    sink = DiagnosticSink()
    s = StreamCompiler(Path("t.yaml"), Schema(), sink, text=text).compile()
    assert s is not None and not sink.errors, sink.errors
    return s


def ev(kind: str, k: str, sec: float, ident: str | None = None) -> dict[str, Any]:
    at = (BASE + dt.timedelta(seconds=sec)).isoformat().replace("+00:00", "Z")
    return {"type": kind, "id": ident or f"{kind}{k}{sec}", "at": at, "payload": {"k": k, "n": 1}}


def feed(c: Correlator, events: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    out = []
    for e in events:
        for m in c.observe(c.parse(e)):
            out.append((m.correlation.id, [x.id for x in m.events]))
    return out


def fresh() -> Correlator:
    return Correlator([compile_stream()], {})


def only(found: list[tuple[str, list[str]]], cid: str) -> list[list[str]]:
    return [ids for c, ids in found if c == cid]


def test_sequence_inside_the_window_and_exactly_at_its_edge():
    found = feed(fresh(), [ev("a", "x", 0, "a1"), ev("b", "x", 50, "b1"), ev("b", "x", 100, "b2")])
    assert only(found, "seq") == [["a1", "b1"], ["a1", "b2"]]


def test_sequence_just_outside_the_window():
    found = feed(fresh(), [ev("a", "x", 0, "a1"), ev("b", "x", 100.001, "b1")])
    assert only(found, "seq") == []


def test_sequence_needs_the_same_key_and_the_order():
    found = feed(fresh(), [ev("a", "x", 0, "a1"), ev("b", "y", 10, "b1"), ev("b", "x", 20, "b2")])
    assert only(found, "seq") == [["a1", "b2"]]
    assert only(feed(fresh(), [ev("b", "x", 0, "b1"), ev("a", "x", 10, "a1")]), "seq") == []


def test_sequence_pairs_with_the_latest_first_event():
    found = feed(fresh(), [ev("a", "x", 0, "a1"), ev("a", "x", 10, "a2"), ev("b", "x", 20, "b1")])
    assert only(found, "seq") == [["a2", "b1"]]


def test_count_threshold_within_the_window():
    c = fresh()
    found = feed(c, [ev("b", "x", 0, "b1"), ev("b", "x", 10, "b2"), ev("b", "y", 20, "y1"),
                     ev("b", "x", 100, "b3"), ev("b", "x", 150, "b4"), ev("b", "x", 210, "b5"),
                     ev("b", "x", 240, "b6")])
    # b3: b1, b2, b3 within 100 s (b1 exactly at the edge); b4, b5: two each; b6: b4, b5, b6
    assert only(found, "three") == [["b1", "b2", "b3"], ["b4", "b5", "b6"]]


def test_absence_is_the_first_time_in_the_window():
    found = feed(fresh(), [ev("a", "x", 0, "a1"), ev("a", "x", 100, "a2"), ev("a", "x", 200.5, "a3"),
                           ev("a", "y", 201, "y1")])
    assert only(found, "new") == [["a1"], ["a3"], ["y1"]]


def test_emitted_case_payload_and_cause():
    c = fresh()
    c.observe(c.parse(ev("a", "x", 0, "a1")))
    [m] = [m for m in c.observe(c.parse(ev("b", "x", 5, "b1"))) if m.correlation.id == "seq"]
    assert m.case == {"type": "x.case", "payload": {"k": "x", "since": "2026-03-01T00:00:00Z", "what": "seq"},
                      "id": "seq@b1", "as_of": "2026-03-01"}
    assert m.cause()["correlation"] == "seq" and [e["id"] for e in m.cause()["events"]] == ["a1", "b1"]


def test_an_event_earlier_than_the_watermark_is_refused():
    c = fresh()
    c.observe(c.parse(ev("a", "x", 10)))
    with pytest.raises(CaseError) as exc:
        c.observe(c.parse(ev("a", "x", 5)))
    assert exc.value.code == "event_out_of_order"


@pytest.mark.parametrize("event,code", [
    ({"type": "c", "at": "2026-03-01T00:00:00Z", "payload": {}}, "event_type_unknown"),
    ({"type": "a", "at": "yesterday", "payload": {"k": "x", "n": 1}}, "event_invalid"),
    ({"type": "a", "at": "2026-03-01T00:00:00Z", "payload": {"k": 3, "n": 1}}, "event_invalid"),
    ({"type": "a", "at": "2026-03-01T00:00:00Z", "payload": {"k": "x", "n": 1}, "extra": 1}, "event_invalid"),
])
def test_malformed_events_are_refused_with_a_code(event, code):
    with pytest.raises(CaseError) as exc:
        fresh().parse(event)
    assert exc.value.code == code


# -- the oracle: full history, no state dropped, the same semantics written plainly ------------------

def oracle(stream: CompiledStream, events: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    def t(e: dict[str, Any]) -> int:
        when = dt.datetime.fromisoformat(e["at"])
        return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)

    out = []
    for i, e in enumerate(events):
        for c in stream.correlations:
            if e["type"] != c.trigger:
                continue
            w = c.window_s * 1_000_000
            before = [p for p in events[:i] if p["type"] == c.prior
                      and all(p["payload"][f] == e["payload"][f] for f in c.same) and t(e) - w <= t(p) <= t(e)]
            if c.pattern == "sequence" and before:
                out.append((c.id, [before[-1]["id"], e["id"]]))
            elif c.pattern == "count" and len(before) >= c.count - 1:
                out.append((c.id, [p["id"] for p in before[len(before) - (c.count - 1):]] + [e["id"]]))
            elif c.pattern == "absence" and not before:
                out.append((c.id, [e["id"]]))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_differential_against_the_oracle_on_random_streams(seed):
    rng = random.Random(seed)
    stream = compile_stream(STREAM.replace("count: 3", f"count: {rng.choice([2, 3, 4])}"))
    sec, events = 0, []
    for i in range(1500):
        sec += rng.choice([0, 0, 1, 5, 20, 50, 100])  # equal times and exact window edges happen
        events.append(ev(rng.choice("ab"), rng.choice("xyzw"[: rng.randint(1, 4)]), sec, f"e{i}"))
    got = feed(Correlator([stream], {}), events)
    assert got == oracle(stream, events)
    assert len(got) > 100


def test_state_stays_bounded_as_windows_expire():
    c = fresh()
    rng = random.Random(7)
    sizes = []
    for i in range(20_000):
        c.observe(c.parse(ev(rng.choice("ab"), f"k{rng.randrange(50)}", i * 2.0, f"e{i}")))
        if i % 5000 == 4999:
            sizes.append((c.retained(), c.facts_in_sessions()))
    # 100 s windows at one event every 2 s: at most 51 events in a window, so at most that many kept
    # per correlation, whatever the number of events; durable-rules holds exactly what Python kept
    for kept, facts in sizes:
        assert kept == facts
        assert kept <= 3 * 51
    assert sizes[-1][0] <= sizes[0][0] + 20
