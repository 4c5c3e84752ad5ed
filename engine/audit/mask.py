"""Masking of personal data before it reaches the audit log (the workspace's `rules/audit.yaml`).

    mask:
      - {path: "case.payload.contact_email", how: hash}     # "sha256:<hex>" of the value
      - {path: "facts.*.email", how: redact}                # "***"
      - path: "provenance.*.o"                              # a triple's object ...
        how: hash
        where: {p: "*#email"}                               # ... only when its predicate is an e-mail

A path is read against the `data` of every event. Its segments are separated by dots; a
segment is a key or list index, may use globs (`*` is one key or index, `*_email` any key
ending so), may be quoted to contain dots (`facts."case.lead.email"`), and `**` stands for any
number of levels. `where` keeps a rule to the objects whose sibling keys match (globs too).
Rules may overlap: masking is idempotent (a value is hashed once; `***` stays `***`).

Masking happens before an event is hashed, so masked values are never stored anywhere; `hash`
lets an auditor check a value they already hold (sha256 of the text) without the log holding it.
Note that a hash of a low-entropy value (an e-mail, a phone number) can be found by guessing:
use `redact` where even that is too much.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.canonical import canonical_json
from engine.errors import DiagnosticSink, LoadError, Span, suggest_help
from engine.lang.source import LDict, LList, LStr, load_yaml, span_of

HOWS = ("hash", "redact")
REDACTED = "***"
RULE_KEYS = ("path", "how", "where", "note")
_GLOB = set("*?[")


@dataclass(frozen=True)
class Segment:
    """One step of a mask path: a key or index, a glob, or `**` (any number of levels)."""

    text: str
    glob: bool = False
    deep: bool = False

    def matches(self, key: str) -> bool:
        return fnmatchcase(key, self.text) if self.glob else key == self.text


def parse_path(text: str) -> tuple[list[Segment], tuple[int, str] | None]:
    """Split a mask path into segments; on a syntax error, (character index, message)."""
    segs: list[Segment] = []
    i, n = 0, len(text)
    if not text.strip():
        return [], (0, "the path is empty")
    while True:
        start = i
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                return [], (i, "a quoted segment is not closed")
            body = text[i + 1:end]
            if not body:
                return [], (i, "a quoted segment is empty")
            segs.append(Segment(body, glob=bool(_GLOB & set(body))))
            i = end + 1
            if i < n and text[i] != ".":
                return [], (i, "a quoted segment must be followed by `.` or end the path")
        else:
            while i < n and text[i] != ".":
                if text[i] == '"':
                    return [], (i, "a quote may only start a segment")
                i += 1
            body = text[start:i]
            if not body.strip() or body != body.strip():
                return [], (start, "a segment is empty or has spaces around it")
            segs.append(Segment(body, glob=bool(_GLOB & set(body)), deep=body == "**"))
        if i >= n:
            break
        i += 1  # the dot
        if i >= n:
            return [], (i - 1, "the path ends with `.`")
    if segs[-1].deep:
        return [], (n - 2, "a path cannot end with `**`; name what to mask, e.g. `**.email`")
    return segs, None


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _hash_value(value: Any) -> str:
    if isinstance(value, str) and _DIGEST.fullmatch(value):
        return value  # already masked by an overlapping rule: hashing again would make it uncheckable
    raw = value if isinstance(value, str) else canonical_json(value)
    return "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MaskRule:
    """Mask the values at `path` (`hash` or `redact`), optionally only `where` siblings match."""

    path: str
    how: str
    segments: tuple[Segment, ...]
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    span: Span | None = field(default=None, compare=False)

    @cached_property
    def needles(self) -> tuple[str, ...]:
        """Texts that must all occur in the canonical JSON of an event for this rule to match.

        In compact canonical JSON a key is always written `"key":` and a value is never followed
        by `:`, so a literal key of the path that does not occur means the rule cannot match."""
        keys = []
        for seg in self.segments:
            if seg.deep or seg.text.isdigit():  # a digit segment may be a list index, not a key
                continue
            if not seg.glob:
                keys.append(canonical_json(seg.text) + ":")
                continue
            # JSON escapes character by character: a glob's literal head and tail appear as such
            head = re.split(r"[*?\[]", seg.text, maxsplit=1)[0]
            tail = re.split(r"[*?\]]", seg.text)[-1]
            if head:
                keys.append('"' + canonical_json(head)[1:-1])
            if tail:
                keys.append(canonical_json(tail)[1:-1] + '":')
        # `where`: the sibling key is written as a key; a literal pattern appears unquoted whether the
        # sibling is text or a number (only when JSON writes it as is: no quote, backslash, control)
        values = [canonical_json(k) + ":" for k, _pats in self.where]
        values += [p for _k, pats in self.where if len(pats) == 1 for p in pats
                   if not _GLOB & set(p) and canonical_json(p)[1:-1] == p]
        return tuple(values + keys[::-1])  # the most specific first: most rules fail on the first test

    def mask(self, value: Any) -> Any:
        if value is None:  # nothing to hide; keeps "absent" distinguishable from "masked"
            return None
        return _hash_value(value) if self.how == "hash" else REDACTED

    def applies_in(self, parent: Any) -> bool:
        """Does `where` hold for the object whose keys the last segment selects?"""
        if not self.where:
            return True
        if not isinstance(parent, dict):
            return False
        for key, patterns in self.where:
            if key not in parent:
                return False
            v = parent[key]
            text = v if isinstance(v, str) else canonical_json(v)
            if not any(fnmatchcase(text, p) for p in patterns):
                return False
        return True


def _map_children(node: Any, fn: Callable[[str, Any], Any]) -> Any:
    """`node` with `fn(key, child)` applied to each child; the same object when nothing changed."""
    if isinstance(node, dict):
        out, changed = {}, False
        for k, v in node.items():
            nv = fn(k, v)
            out[k] = nv
            changed = changed or nv is not v
        return out if changed else node
    if isinstance(node, list):
        items = [fn(str(i), v) for i, v in enumerate(node)]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node


def _walk(node: Any, rule: MaskRule, i: int) -> Any:
    segs = rule.segments
    if i == len(segs):
        return rule.mask(node)
    seg = segs[i]
    if seg.deep:
        node = _walk(node, rule, i + 1)  # `**` as zero levels ...
        return _map_children(node, lambda _k, v: _walk(v, rule, i))  # ... and as one level more
    if i == len(segs) - 1 and not rule.applies_in(node):
        return node
    if not seg.glob and isinstance(node, dict):  # a literal key: look it up, do not scan the siblings
        if seg.text not in node:
            return node
        child = node[seg.text]
        new = _walk(child, rule, i + 1)
        return node if new is child else {**node, seg.text: new}
    return _map_children(node, lambda k, v: _walk(v, rule, i + 1) if seg.matches(k) else v)


@dataclass
class Masker:
    """The masking rules of a workspace; `apply` is pure (a masked copy; the input is untouched)."""

    rules: list[MaskRule] = field(default_factory=list)
    file: str | None = None

    def __len__(self) -> int:
        return len(self.rules)

    def apply(self, data: dict[str, Any], *, text: str | None = None) -> dict[str, Any]:
        """A copy of `data` with every masked value replaced (only changed branches are copied).

        `text`, the canonical JSON of `data` when the caller has it, lets rules whose keys do not
        occur in it be skipped without walking the data (the common case: most events carry no
        personal field)."""
        if not self.rules:
            return data
        if text is None:
            text = canonical_json(data)
        out = data
        for rule in self.rules:
            for needle in rule.needles:
                if needle not in text:
                    break
            else:
                out = _walk(out, rule, 0)
        return out

    @classmethod
    def load(cls, path: Path | str, *, text: str | None = None) -> Masker:
        """Load masking rules; every problem is a diagnostic with file:line:col (`LoadError`)."""
        sink = DiagnosticSink()
        masker = parse_masker(load_yaml(path, sink, text=text), str(path), sink)
        if sink.errors:
            raise LoadError(sink.items)
        return masker


def parse_masker(data: Any, file: str, sink: DiagnosticSink) -> Masker:
    """Check a loaded `audit.yaml` (located values) into a Masker; problems go to `sink`."""
    masker = Masker(file=file)
    top = Span(file, 1, 1)
    if data is None:
        return masker  # an empty file: no masking rules
    if not isinstance(data, LDict):
        sink.error("schema", "an audit file is a mapping with a `mask:` list", span_of(data, top),
                   help="e.g. `mask: [{path: case.payload.contact_email, how: hash}]`")
        return masker
    for k in data:
        if k != "mask":
            help_, sug = suggest_help(str(k), ["mask"], "keys")
            sink.error("schema", f"unknown key `{k}` in the audit file", data.key_spans.get(k), help=help_,
                       suggestion=sug)
    items = data.get("mask")
    if items is None:
        return masker
    if not isinstance(items, LList):
        sink.error("schema", "`mask` must be a list of rules", span_of(items, data.key_spans.get("mask")),
                   help="each rule is `{path: ..., how: hash | redact}`")
        return masker
    for item in items:
        rule = _parse_rule(item, file, sink)
        if rule is not None:
            masker.rules.append(rule)
    return masker


def _parse_rule(item: Any, file: str, sink: DiagnosticSink) -> MaskRule | None:
    where_item = span_of(item, Span(file, 1, 1))
    if not isinstance(item, LDict):
        sink.error("schema", "a mask rule is a mapping with `path` and `how`", where_item,
                   help="e.g. `{path: case.payload.contact_email, how: hash}`")
        return None
    ok = True
    for k in item:
        if k not in RULE_KEYS:
            help_, sug = suggest_help(str(k), RULE_KEYS, "keys")
            sink.error("schema", f"unknown key `{k}` in a mask rule", item.key_spans.get(k), help=help_,
                       suggestion=sug)
            ok = False
    for k in ("path", "how"):
        if k not in item:
            sink.error("schema", f"a mask rule needs `{k}`", where_item,
                       help="e.g. `{path: case.payload.contact_email, how: hash}`")
            ok = False
    path, how = item.get("path"), item.get("how")
    segments: list[Segment] = []
    if path is not None:
        if not isinstance(path, LStr):
            sink.error("schema", "`path` must be text, like `case.payload.contact_email`", span_of(path, where_item))
            ok = False
        else:
            segments, problem = parse_path(str(path))
            if problem is not None:
                _path_error(path, problem, sink)
                ok = False
    if how is not None and (not isinstance(how, LStr) or str(how) not in HOWS):
        help_, sug = suggest_help(str(how), HOWS, "ways to mask") if isinstance(how, LStr) else (
            "use `hash` (sha256 of the value) or `redact` (`***`)", None)
        sink.error("schema", f"unknown way to mask `{how}`", span_of(how, where_item), help=help_, suggestion=sug)
        ok = False
    where = _parse_where(item.get("where"), item.key_spans.get("where", where_item), sink)
    if where is None or not ok:
        return None
    return MaskRule(str(path), str(how), tuple(segments), where, where_item)


def _path_error(path: LStr, problem: tuple[int, str], sink: DiagnosticSink) -> None:
    index, message = problem
    span = path.span
    if span is not None:
        span = path.span_at(min(index, max(len(path) - 1, 0)))
    sink.error("schema", f"invalid mask path `{path}`: {message}", span,
               help="segments are keys or indexes separated by dots; `*` is one key or index, `**` any number "
               "of levels; quote a key that contains dots: `facts.\"case.lead.email\"`")


def _parse_where(value: Any, where: Span | None, sink: DiagnosticSink
                 ) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """`where: {key: pattern | [patterns]}` → a tuple of (key, patterns); None on an error."""
    if value is None:
        return ()
    if not isinstance(value, LDict) or not value:
        sink.error("schema", "`where` must be a mapping of sibling keys to patterns, like `{p: \"*#email\"}`",
                   span_of(value, where))
        return None
    out = []
    for key, pats in value.items():
        patterns = pats if isinstance(pats, LList) else [pats]
        if not patterns or not all(isinstance(p, LStr) for p in patterns):
            sink.error("schema", f"`where.{key}` must be a text pattern or a list of them",
                       span_of(pats, value.key_spans.get(key)))
            return None
        out.append((str(key), tuple(str(p) for p in patterns)))
    return tuple(out)
