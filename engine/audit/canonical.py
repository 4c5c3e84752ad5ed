"""Canonical JSON: the exact bytes an audit event's hash is computed over.

An event is hashed as JSON with sorted keys, compact separators, `ensure_ascii=False`, UTF-8,
and no NaN or infinity, so that anyone can recompute a hash from an export with a few lines
of any language. Only JSON-native values may enter an event (`dict` with `str` keys, `list`,
`str`, `int`, finite `float`, `bool`, `None`): anything else would be converted by the JSON
encoder in a way the caller did not choose (a tuple turns into a list, an `int` key into a
string, a `Decimal` fails), and the stored event would silently differ from what was logged.
`jsonable` is the explicit, deterministic conversion for callers who hold richer values.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

from engine.canonical import canonical_json
from engine.errors import RulebridgeError

# Nesting deeper than this is a mistake or an attack; the recursive check would exhaust the stack.
MAX_DEPTH = 64


class AuditError(RulebridgeError):
    """The audit log refused an operation; `code` is stable (audit_not_json, audit_invalid, ...)."""

    code = "audit_error"


class Native:
    """A JSON object checked once, with its canonical text: `AuditLog.append` takes it as is.

    Made only by `native`, which proves what the log's own check proves (the value survives a
    JSON round trip unchanged), so the log does not canonicalise and round-trip it a second time.
    `data` is a private copy (parsed back from `text`): later changes to the caller's value do
    not reach it."""

    __slots__ = ("data", "text")

    def __init__(self, data: dict[str, Any], text: str):
        self.data, self.text = data, text


def native(value: dict[str, Any], convert: Any = None) -> Native:
    """`value` as a `Native` event body.

    Fast path (C only): the canonical text, parsed back, equals `value` — so `value` is made of
    JSON-native values (a tuple, a non-text key, NaN or an object the encoder refuses would
    fail or differ), and the text is exactly `canonical_json(jsonable(value))`. Otherwise
    `convert` (default `jsonable`) converts it, and the result is checked the slow way."""
    try:
        text = canonical_json(value)
        copy = json.loads(text)
        if type(copy) is dict and copy == value:
            text.encode("utf-8")  # a lone surrogate: refused below with its path
            return Native(copy, text)
    except (TypeError, ValueError, RecursionError):
        pass
    converted = (convert or jsonable)(value)
    if type(converted) is not dict:
        raise AuditError(f"`data` must be a JSON object, got `{type(converted).__name__}`", code="audit_not_json")
    check_json_native(converted)
    text = canonical_json(converted)
    return Native(json.loads(text), text)


def encoded(value: dict[str, Any], convert: Any = None) -> Native:
    """An event body the engine built itself, encoded once: its canonical text, and `value` kept
    as it is (no parse back, no comparison — the work `native` does to prove a caller's value).

    For bodies made by `engine.audit.trail` from a decision: they hold only JSON-native values by
    construction (dicts with text keys, lists, text, numbers, booleans, None), which
    `tests/audit/test_trail.py` holds them to. What is stored and hashed is the text either way;
    a value the encoder refuses (an entity, a date) goes the `native` way, converted and checked."""
    try:
        text = canonical_json(value)
        text.encode("utf-8")  # a lone surrogate: refused by `native` with its path
    except (TypeError, ValueError, RecursionError):
        return native(value, convert)
    return Native(value, text)


def check_json_native(value: Any, where: str = "data") -> None:
    """Raise `AuditError(audit_not_json)` naming the first value that is not JSON-native."""
    _check(value, where, 0)


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AuditError(f"`{where}`: nested more than {MAX_DEPTH} levels deep", code="audit_not_json")
    t = type(value)
    if t is str:
        _check_text(value, where)
        return
    if value is None or t is bool or t is int:
        return
    if t is float:
        if not math.isfinite(value):
            raise AuditError(f"`{where}`: {value!r} is not a JSON number", code="audit_not_json")
        return
    if t is list:
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", depth + 1)
        return
    if t is dict:
        for k, item in value.items():
            if type(k) is not str:
                raise AuditError(f"`{where}`: key {k!r} is not a string", code="audit_not_json")
            _check_text(k, where)
            _check(item, f"{where}.{k}", depth + 1)
        return
    raise AuditError(f"`{where}`: a value of type `{t.__name__}` is not JSON; convert it first "
                     "(engine.audit.jsonable converts dates, decimals, sets and dataclasses)",
                     code="audit_not_json")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditError(f"`{where}`: text that is not valid Unicode (a lone surrogate)",
                         code="audit_not_json") from None


def jsonable(obj: Any) -> Any:
    """A JSON-native copy of `obj`, converted deterministically.

    datetime/date/time → ISO 8601 (an aware datetime in UTC); Decimal → int when integral, else
    its exact text; set/frozenset → a sorted list; tuple → list; dataclass → dict of its fields;
    Enum → its value; UUID and paths → text; bytes → base64 text; float NaN/inf → refused.
    Anything else raises `AuditError(audit_not_json)`: a silent `str()` would log a repr.
    """
    return _convert(obj, "data", 0)


def _convert(obj: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise AuditError(f"`{where}`: nested more than {MAX_DEPTH} levels deep", code="audit_not_json")
    if isinstance(obj, enum.Enum):  # before str and int: a `str` or `int` enum logs its value
        return _convert(obj.value, where, depth + 1)
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise AuditError(f"`{where}`: {obj!r} is not a JSON number", code="audit_not_json")
        return float(obj)
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise AuditError(f"`{where}`: {obj} is not a JSON number", code="audit_not_json")
        # An integral decimal becomes an int; any other stays exact as text (a float would round).
        return int(obj) if obj == obj.to_integral_value() else str(obj)
    if isinstance(obj, dt.datetime):
        return (obj.astimezone(dt.UTC) if obj.tzinfo else obj).isoformat()
    if isinstance(obj, (dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, (UUID, PurePath)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _convert(getattr(obj, f.name), f"{where}.{f.name}", depth + 1)
                for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = _key(k, where)
            if key in out:
                raise AuditError(f"`{where}`: two keys convert to `{key}`", code="audit_not_json")
            out[key] = _convert(v, f"{where}.{key}", depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return [_convert(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [_convert(v, f"{where}[]", depth + 1) for v in obj]
        return sorted(items, key=canonical_json)  # sets have no order: sort by canonical text
    raise AuditError(f"`{where}`: cannot convert a value of type `{type(obj).__name__}` to JSON",
                     code="audit_not_json")


def _key(k: Any, where: str) -> str:
    if isinstance(k, str):
        return str(k)
    if isinstance(k, enum.Enum):
        k = k.value
    if isinstance(k, (bool, int, Decimal, UUID)) or k is None:
        return json.dumps(k) if isinstance(k, bool) or k is None else str(k)
    raise AuditError(f"`{where}`: key {k!r} of type `{type(k).__name__}` cannot be a JSON key",
                     code="audit_not_json")
