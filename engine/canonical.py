"""Canonical JSON: the one text the engine gives a value wherever it hashes, signs or compares it.

Sorted keys, compact separators, `ensure_ascii=False` (UTF-8 as is), and no NaN or infinity, so
that anyone can recompute a hash from an export with a few lines of any language. Only
JSON-native values are accepted (`dict` with `str` keys, `list`, `str`, `int`, finite `float`,
`bool`, `None`); anything else raises `TypeError` or `ValueError` rather than being converted
in a way the caller did not choose (`engine.audit.canonical.jsonable` is the explicit conversion).

The audit log hashes its events over this text; the review queue binds an approval to the
`proposal_hash` of an action and its parameters; the execution ledger keys each execution by a
digest of the decision, the step and that proposal hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON-native value (sorted keys, compact, UTF-8 as is)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(value: Any) -> str:
    """sha256 (hex) of the canonical text of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def proposal_hash(action: str, params: dict[str, Any]) -> str:
    """A stable hash of an exact action and its parameters (binds approvals and idempotency keys)."""
    return digest({"action": action, "params": params})


__all__ = ["canonical_json", "digest", "proposal_hash"]
