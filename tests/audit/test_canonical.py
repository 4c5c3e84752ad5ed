"""Canonical JSON and event hashing: the exact bytes a hash covers, and what may enter an event."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audit.canonical import AuditError, check_json_native, jsonable
from engine.audit.chain import GENESIS, AuditEvent, event_hash, hash_of, hashed_text, sign
from engine.canonical import canonical_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
texts = st.text(min_size=1, max_size=30)


def test_canonical_json_is_sorted_compact_and_utf8():
    assert canonical_json({"b": 1, "a": [1.5, None, True], "é": "ü"}) == '{"a":[1.5,null,true],"b":1,"é":"ü"}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.text(max_size=8), json_values, max_size=5), seq=st.integers(1, 2**53),
       ts=texts, decision_id=texts, step=texts, agent=texts, eid=texts)
def test_hashed_text_equals_the_canonical_json_of_the_whole_event(data, seq, ts, decision_id, step, agent, eid):
    # An external verifier hashes canonical_json(event without hash/sig); the log splices `data` in.
    fields = {"seq": seq, "id": eid, "schema": 1, "ts": ts, "decision_id": decision_id, "step": step,
              "agent": agent, "prev": GENESIS}
    spliced = hashed_text(**fields, data_text=canonical_json(data))
    assert spliced == canonical_json({**fields, "data": data})
    assert json.loads(spliced)["data"] == data


def test_hash_covers_every_field_and_the_signature_needs_the_key():
    e = AuditEvent(3, "E-1", 1, "2026-01-01T00:00:00.000000+00:00", "d1", "decided", "ops", {"a": 1}, GENESIS, "")
    h = hash_of(e)
    assert h == hashlib.sha256(canonical_json({k: v for k, v in e.to_json().items()
                                               if k not in ("hash", "sig")}).encode()).hexdigest()
    changed = [dataclasses.replace(e, **{k: v}) for k, v in
               (("seq", 4), ("id", "E-2"), ("schema", 2), ("ts", "2026-01-01T00:00:00.000001+00:00"),
                ("decision_id", "d2"), ("step", "received"), ("agent", "x"), ("data", {"a": 2}), ("prev", "1" * 64))]
    assert len({hash_of(c) for c in changed} | {h}) == len(changed) + 1
    assert sign(b"k" * 16, h) != sign(b"j" * 16, h)
    assert event_hash("x") == hashlib.sha256(b"x").hexdigest()


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Line:
    sku: str
    price: Decimal
    when: dt.date


def test_jsonable_converts_deterministically():
    value = {
        "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "day": dt.date(2026, 1, 2), "price": Decimal("10.50"), "whole": Decimal("12"), "tags": {"b", "a"},
        "pair": (1, 2), "colour": Colour.RED, "id": UUID(int=1), "raw": b"\x00\x01", "line": Line("A", Decimal("1.1"),
                                                                                                  dt.date(2026, 1, 1)),
        7: "int key",
    }
    out = jsonable(value)
    assert out == {
        "at": "2026-01-02T01:04:05+00:00", "day": "2026-01-02", "price": "10.50", "whole": 12, "tags": ["a", "b"],
        "pair": [1, 2], "colour": "red", "id": "00000000-0000-0000-0000-000000000001", "raw": "AAE=",
        "line": {"sku": "A", "price": "1.1", "when": "2026-01-01"}, "7": "int key"}
    check_json_native(out)
    assert canonical_json(jsonable(value)) == canonical_json(out)  # the same every time


@pytest.mark.parametrize("bad, where", [
    ({"x": object()}, "data.x"), ({"x": [1, float("inf")]}, "data.x[1]"), ({1: "a"}, "data"),
    ({"x": (1, 2)}, "data.x"), ({"x": Decimal("1")}, "data.x"), ({"x": "\ud800"}, "data.x"),
    ({"x": dt.date(2026, 1, 1)}, "data.x"),
])
def test_values_that_are_not_json_native_are_refused_by_path(bad, where):
    with pytest.raises(AuditError) as exc:
        check_json_native(bad)
    assert exc.value.code == "audit_not_json"
    assert f"`{where}`" in str(exc.value)


def test_jsonable_refuses_what_it_cannot_convert_faithfully():
    for bad in ({"x": object()}, {"x": Decimal("NaN")}, {"x": float("nan")}, {1: "a", "1": "b"}):
        with pytest.raises(AuditError) as exc:
            jsonable(bad)
        assert exc.value.code == "audit_not_json"
