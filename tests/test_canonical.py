"""One canonical JSON for every hash the engine computes (audit events, approvals, execution keys)."""

import datetime as dt
import hashlib
import math

import pytest

from engine.canonical import canonical_json, digest, proposal_hash


def test_keys_sorted_compact_and_utf8_as_is():
    assert canonical_json({"b": 1, "a": ["é", 2.5, None, True]}) == '{"a":["é",2.5,null,true],"b":1}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_refuses_values_json_cannot_hold(bad):
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


@pytest.mark.parametrize("bad", [dt.date(2026, 1, 1), {1, 2}, b"x", object()])
def test_refuses_what_it_would_have_to_convert(bad):
    """No silent `str()`: two different values must never share a hash by being stringified alike."""
    with pytest.raises(TypeError):
        canonical_json({"x": bad})


def test_proposal_hash_known_value_and_order_independent():
    text = '{"action":"a","params":{"x":1,"y":"é"}}'
    assert proposal_hash("a", {"y": "é", "x": 1}) == hashlib.sha256(text.encode()).hexdigest()
    assert digest({"action": "a", "params": {"x": 1, "y": "é"}}) == proposal_hash("a", {"x": 1, "y": "é"})
