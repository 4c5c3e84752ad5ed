"""IRIs in a case payload: the one-match fast path of `is_iri` answers exactly as the
character-by-character check, and both refuse what the graph would refuse."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.lang.payload import _is_iri_by_character, is_iri

ALPHABET = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?#% <>\"{}|\\^`\x00\n\u00e9\u00a0\u200b\ufdd0"


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(["", "https://", "urn:", "a:", "x+y.z-:", "1a:", "bwd:"]), st.text(ALPHABET, max_size=40))
def test_the_fast_path_agrees_with_the_full_check(prefix, rest):
    text = prefix + rest
    assert is_iri(text) == _is_iri_by_character(text)


@pytest.mark.parametrize("text, ok", [
    ("https://brightwater.example/id/INV-10001", True),
    ("urn:rulebridge:execution:abc", True),
    ("https://x.example/a#b", True),
    ("https://x.example/a#b#c", False),
    ("https://x.example/a b", False),
    ("https://x.example/%zz", False),
    ("https://x.example/%41", True),
    ("https://x.example/caf\u00e9", True),
    ("no-scheme", False),
    ("https://x.example/<a>", False),
])
def test_known_answers(text, ok):
    assert is_iri(text) is ok
