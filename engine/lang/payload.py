"""Case payloads checked against a ruleset's `case:` schema, with graph references made entities."""

from __future__ import annotations

import datetime as dt
import math
import re
import string
import sys
from typing import Any

from engine.case import Entity
from engine.errors import Diagnostic, shown, shown_value

from .checker import expand_iri
from .types import Type


def validate_payload(t: Type, value: Any, prefixes: dict[str, str], *, where: str = "payload"
                     ) -> tuple[Any, list[Diagnostic]]:
    """Return the payload as rule values (IRIs → `Entity`, ISO dates → `date`) and any problems."""
    errors: list[Diagnostic] = []
    out = _convert(t, value, prefixes, where, errors)
    return out, errors


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_IRI_ASCII = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?#")
# Bidirectional formatting characters: an IRI must not contain them (RFC 3987, 4.1), because
# they make one IRI display as another (`INV-10001` shown for `INV-10010`).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# The common case, checked in one match: a scheme, then only the ASCII characters an IRI allows
# unescaped (no `%`, at most one `#`). Anything else takes the character-by-character path.
_PLAIN_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*"
                        r"(?:#[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)?")


def is_iri(text: str) -> bool:
    """Whether `text` is an absolute IRI (RFC 3987, without IP-literal hosts): what the graph accepts."""
    return _PLAIN_IRI.fullmatch(text) is not None or _is_iri_by_character(text)


def _is_iri_by_character(text: str) -> bool:
    """`is_iri` the long way: every character checked (percent-escapes, non-ASCII ranges)."""
    if not _SCHEME.match(text) or text.count("#") > 1:
        return False
    for i, c in enumerate(text):
        o = ord(c)
        if c == "%":
            if not _HEX2.fullmatch(text, i + 1, i + 3):
                return False
        elif o < 0x80:
            if c not in _IRI_ASCII:
                return False
        elif (o < 0xA0 or 0xD800 <= o <= 0xF8FF or 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFE) == 0xFFFE
              or o > 0xEFFFD or c in _BIDI):
            return False  # controls, surrogates, private use, non-characters and bidi formatting
    return True


def _err(errors: list[Diagnostic], where: str, message: str, help: str | None = None) -> None:
    errors.append(Diagnostic("case_invalid", f"`{where}`: {message}", help=help))


def _convert(t: Type, v: Any, prefixes: dict[str, str], where: str, errors: list[Diagnostic]) -> Any:
    if v is None:
        if not t.optional and t.kind != "object":
            _err(errors, where, "is required", help=f"give a {t}")
        return None
    k = t.kind
    if k == "object":
        if not isinstance(v, dict):
            _err(errors, where, f"must be an object, got {type(v).__name__}")
            return None
        fields = t.field_map()
        unknown = sorted(set(v) - set(fields), key=str)
        for u in unknown[:20]:  # enough to see the mistake; a flood of keys is not echoed
            from engine.errors import did_you_mean

            best = did_you_mean(u, fields)
            _err(errors, f"{where}.{shown(str(u))}", "is not a field of this case",
                 help=f"did you mean `{best}`?" if best else "known fields: " + ", ".join(sorted(fields)))
        return {name: _convert(ft, v.get(name), prefixes, f"{where}.{name}", errors) for name, ft in t.fields}
    if k == "list":
        if not isinstance(v, list):
            _err(errors, where, f"must be a list, got {type(v).__name__}")
            return None
        return [_convert(t.elem or Type("any"), x, prefixes, f"{where}[{i}]", errors) for i, x in enumerate(v)]
    if k == "ref":
        if not isinstance(v, str) or not v:
            _err(errors, where, f"must be the IRI of a `{t.cls}`", help="for example `bwd:INV-10001`")
            return None
        iri = expand_iri(v, prefixes)
        if not is_iri(iri):
            _err(errors, where, f"must be the IRI of a `{t.cls}`: `{shown(v)}` is not an IRI",
                 help="write a prefixed name such as `bwd:INV-10001` or a full IRI such as `https://...`")
            return None
        return Entity(iri)
    if k == "number":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _err(errors, where, f"must be a number, got {shown_value(v)}")
            return None
        if isinstance(v, float) and not math.isfinite(v):
            _err(errors, where, f"must be a finite number, got {shown_value(v)}")
            return None
        if isinstance(v, int) and abs(v) > sys.float_info.max:
            _err(errors, where, "is too large a number",
                 help=f"numbers must lie within ±{sys.float_info.max:.4g}")
            return None
        return v
    if k == "string":
        if not isinstance(v, str):
            _err(errors, where, f"must be text, got {shown_value(v)}")
            return None
        return v
    if k == "boolean":
        if not isinstance(v, bool):
            _err(errors, where, f"must be true or false, got {shown_value(v)}")
            return None
        return v
    if k == "date":
        try:
            return dt.date.fromisoformat(str(v)[:10])
        except ValueError:
            _err(errors, where, f"must be a date like 2026-01-31, got {shown_value(v)}")
            return None
    return v
