"""Stream files → checked event types and correlations.

A stream file (top-level `stream:`) declares event types with typed fields and correlations
over them: a sequence (`first` then `then` within a window), a count (`count` events within a
window) or an absence (an event with no earlier one of its kind within a window). Each
correlation emits a case of a declared case type; `check_emits` checks the emitted payload
against that case type's `case:` schema once every ruleset is compiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DiagnosticSink, Span, suggest_help

from .actions import parse_type
from .compiler import check_keys
from .source import LDict, LInt, LList, LNone, LStr, load_yaml, span_of
from .types import STRING, Schema, Type

STREAM_KEYS = ("stream", "description", "events", "correlations")
CORRELATION_KEYS = ("id", "description", "first", "then", "event", "count", "same", "within", "emits")
EMITS_KEYS = ("case", "payload", "agent")
PATTERNS = ("sequence", "count", "absence")
# the roles an emitted payload may read, per pattern
ROLES = {"sequence": ("first", "then"), "count": ("first", "event"), "absence": ("event",)}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([1-9][0-9]{0,6})\s*([smhdw])")
MAX_WINDOW_S = 366 * 86400  # a window longer than a year keeps a year of state: refused
MAX_COUNT = 1000  # count state per key is kept in durable-rules; bounded
SCALAR_KINDS = ("string", "number", "boolean", "date", "ref")


def stream_file(text: str) -> bool:
    """Whether a rule file's text is a stream file (a top-level `stream:` key)."""
    return re.search(r"(?m)^stream\s*:", text) is not None


@dataclass
class EventType:
    """An event type: its fields (like a case's payload); every event also has `at` and `id`."""

    name: str
    schema: Type
    span: Span | None

    def field_type(self, name: str) -> Type | None:
        if name == "at":
            return Type("datetime")
        if name == "id":
            return STRING
        return self.schema.field_map().get(name)

    def field_names(self) -> list[str]:
        return [*self.schema.field_map(), "at", "id"]


@dataclass
class Correlation:
    """One compiled correlation: the pattern, its event types, keys, window and what it emits."""

    id: str
    description: str
    pattern: str  # sequence | count | absence
    prior: str  # the event type whose earlier events are kept (sequence: `first`)
    trigger: str  # the event type that completes a match (sequence: `then`)
    same: tuple[str, ...]
    window_s: int
    count: int  # count: the threshold; absence: 1; sequence: 2
    case_type: str
    payload: dict[str, tuple[str, str | None]]  # case field -> (role, event field) or ("", literal text)
    agent: str | None
    span: Span | None
    emits_span: Span | None = None
    payload_spans: dict[str, Span | None] = field(default_factory=dict)
    file: str = ""


@dataclass
class CompiledStream:
    """A checked stream file."""

    name: str
    version: str
    file: str
    description: str
    events: dict[str, EventType]
    correlations: list[Correlation]


def parse_duration(text: str) -> int | None:
    """Seconds of a duration like `7d`, `12h`, `30m`, `45s`, `2w` (one number and one unit)."""
    m = _DURATION.fullmatch(text.strip())
    return int(m.group(1)) * _UNITS[m.group(2)] if m else None


class StreamCompiler:
    """Compiles one stream file; collects diagnostics, never raises on user errors."""

    def __init__(self, path: Path, schema: Schema, sink: DiagnosticSink, *, text: str | None = None):
        self.path, self.file, self.schema, self.sink, self.text = path, str(path), schema, sink, text

    def compile(self) -> CompiledStream | None:
        if self.text is None:  # read once: parsed, and hashed for the stream's revision
            with contextlib.suppress(OSError, UnicodeDecodeError):  # `load_yaml` reports it with its code
                self.text = self.path.read_text(encoding="utf-8")
        data = load_yaml(self.path, self.sink, text=self.text)
        top = Span(self.file, 1, 1)
        if not isinstance(data, LDict):
            self.sink.error("schema", "a stream file is a mapping with `stream:`, `events:` and `correlations:`",
                            span_of(data, top))
            return None
        check_keys(data, STREAM_KEYS, "a stream file", self.sink)
        for key in ("stream", "events", "correlations"):
            if key not in data or isinstance(data[key], LNone):
                self.sink.error("schema", f"missing `{key}:`", top,
                                help="a stream file has `stream:` (its name), `events:` and `correlations:`")
        events = self._events(data.get("events"), top)
        correlations = self._correlations(data.get("correlations"), events, top)
        return CompiledStream(str(data.get("stream") or self.path.stem),
                              hashlib.sha256((self.text or "").encode()).hexdigest()[:12], self.file,
                              str(data.get("description") or ""), events, correlations)

    def _events(self, spec: Any, top: Span) -> dict[str, EventType]:
        out: dict[str, EventType] = {}
        if spec is None or isinstance(spec, LNone):
            return out
        if not isinstance(spec, LDict):
            self.sink.error("schema", "`events:` maps each event type to its fields", span_of(spec, top),
                            help="for example `events: {vendor.bank_details_changed: {vendor: Vendor}}`")
            return out
        for name, fields in spec.items():
            where = spec.key_spans.get(name)
            if not isinstance(fields, LDict):
                self.sink.error("schema", f"event type `{name}` maps each field to its type",
                                span_of(fields, where), help="for example `{vendor: Vendor, amount: number}`")
                continue
            bad = [k for k in fields if k in ("at", "id", "type")]
            for k in bad:
                self.sink.error("schema", f"`{k}` is a field every event has; an event type cannot declare it",
                                fields.key_spans.get(k), help="`at` is the event's time, `id` its identity")
            t = parse_type(LDict({k: v for k, v in fields.items() if k not in bad}), self.schema, self.sink,
                           span_of(fields, where))
            if t is not None:
                out[str(name)] = EventType(str(name), t, where)
        return out

    def _correlations(self, spec: Any, events: dict[str, EventType], top: Span) -> list[Correlation]:
        out: list[Correlation] = []
        if spec is None or isinstance(spec, LNone):
            return out
        if not isinstance(spec, LList):
            self.sink.error("schema", "`correlations:` is a list", span_of(spec, top))
            return out
        seen: dict[str, Span | None] = {}
        for item in spec:
            c = self._correlation(item, events, span_of(item, top))
            if c is None:
                continue
            if c.id in seen:
                other = seen[c.id]
                self.sink.error("duplicate_id", f"correlation `{c.id}` is defined twice", c.span,
                                help=f"the other is at line {other.line if other else '?'}; ids are unique")
                continue
            seen[c.id] = c.span
            out.append(c)
        return out

    def _event_ref(self, d: LDict, key: str, events: dict[str, EventType]) -> EventType | None:
        value = d.get(key)
        where = span_of(value, d.key_spans.get(key))
        if not isinstance(value, LStr):
            self.sink.error("schema", f"`{key}:` names an event type", where)
            return None
        et = events.get(str(value))
        if et is None:
            help_, sug = suggest_help(str(value), events, "event types")
            self.sink.error("unknown_name", f"unknown event type `{value}`", where, help=help_, suggestion=sug)
        return et

    def _correlation(self, d: Any, events: dict[str, EventType], where: Span | None) -> Correlation | None:
        if not isinstance(d, LDict):
            self.sink.error("schema", "a correlation is a mapping with `id`, a pattern and `emits`", where)
            return None
        check_keys(d, CORRELATION_KEYS, "a correlation", self.sink)
        for key in ("id", "within", "emits"):
            if key not in d:
                self.sink.error("schema", f"missing `{key}:` in a correlation", where,
                                help="a correlation has `id`, a pattern (`first`/`then`, `event` with `count`, "
                                     "or `event` alone: an absence), `same`, `within` and `emits`")
        cid = str(d.get("id") or "")
        n_errors = len(self.sink.errors)
        if "first" in d or "then" in d:
            pattern = "sequence"
            for key in ("first", "then"):
                if key not in d:
                    self.sink.error("schema", f"a sequence needs `{key}:`", where,
                                    help="a sequence is `first: EVENT` then `then: EVENT`")
            for key in ("event", "count"):
                if key in d:
                    self.sink.error("schema", f"a sequence has no `{key}:`", d.key_spans.get(key),
                                    help="`first`/`then` is a sequence; `event` with `count` a count")
            prior = self._event_ref(d, "first", events) if "first" in d else None
            trigger = self._event_ref(d, "then", events) if "then" in d else None
            count = 2
        elif "event" in d:
            prior = trigger = self._event_ref(d, "event", events)
            pattern = "count" if "count" in d else "absence"
            count = 1
            if "count" in d:
                raw = d["count"]
                if not isinstance(raw, LInt) or not 2 <= int(raw) <= MAX_COUNT:
                    self.sink.error("schema", f"`count:` must be a whole number from 2 to {MAX_COUNT}",
                                    span_of(raw, d.key_spans.get("count")),
                                    help="the number of events, this one included, within the window")
                else:
                    count = int(raw)
        else:
            self.sink.error("schema", "a correlation needs a pattern: `first`/`then`, or `event`", where,
                            help="a sequence: `first: A` and `then: B`; a count: `event: A` and `count: 3`; "
                                 "an absence (first time in a window): `event: A` alone")
            return None
        window = self._window(d)
        same = self._same(d, [e for e in (prior, trigger) if e is not None])
        if len(self.sink.errors) > n_errors or prior is None or trigger is None or window is None:
            self._emits(d, pattern, {}, where)  # still checked, for every diagnostic at once
            return None
        roles = {"sequence": {"first": prior, "then": trigger}, "count": {"first": prior, "event": trigger},
                 "absence": {"event": trigger}}[pattern]
        emitted = self._emits(d, pattern, roles, where)
        if emitted is None:
            return None
        case_type, payload, agent, emits_span, spans = emitted
        return Correlation(cid, str(d.get("description") or ""), pattern, prior.name, trigger.name, same, window,
                           count, case_type, payload, agent, d.key_spans.get("id", where), emits_span, spans,
                           self.file)

    def _window(self, d: LDict) -> int | None:
        raw = d.get("within")
        if raw is None:
            return None
        where = span_of(raw, d.key_spans.get("within"))
        seconds = parse_duration(str(raw)) if isinstance(raw, LStr) else None
        if seconds is None or seconds > MAX_WINDOW_S:
            why = "is longer than a year" if seconds is not None else "is not a duration"
            self.sink.error("duration_syntax", f"`within: {raw}` {why}", where,
                            help="a whole number and a unit: `45s`, `30m`, `12h`, `7d` or `2w`, at most `366d`")
            return None
        return seconds

    def _same(self, d: LDict, ets: list[EventType]) -> tuple[str, ...]:
        raw = d.get("same")
        if raw is None:
            return ()
        if isinstance(raw, LStr):
            raw = LList([raw])
            raw.span = d["same"].span
        if not isinstance(raw, LList) or not all(isinstance(x, LStr) for x in raw):
            self.sink.error("schema", "`same:` is a list of event fields", span_of(raw, d.key_spans.get("same")),
                            help="for example `same: [vendor]`")
            return ()
        out = []
        for name in raw:
            types = []
            for et in ets:
                t = et.field_type(str(name))
                if t is None:
                    help_, sug = suggest_help(str(name), et.field_names(), "fields")
                    self.sink.error("unknown_name", f"event type `{et.name}` has no field `{name}`", name.span,
                                    help=help_, suggestion=sug)
                elif t.kind not in SCALAR_KINDS or t.optional:
                    self.sink.error("type_mismatch", f"`same:` compares single values, but `{et.name}.{name}` "
                                    f"is {'optional' if t.optional else t}", name.span,
                                    help="key events on a required text, number, date or entity field")
                else:
                    types.append(t)
            if len(types) == 2 and not _same_kind(types[0], types[1]):
                self.sink.error("type_mismatch", f"`{name}` is {types[0]} in `{ets[0].name}` but {types[1]} in "
                                f"`{ets[1].name}`: they are never the same", name.span)
            out.append(str(name))
        return tuple(out)

    def _emits(self, d: LDict, pattern: str, roles: dict[str, EventType], where: Span | None
               ) -> tuple[str, dict[str, tuple[str, str | None]], str | None, Span | None,
                          dict[str, Span | None]] | None:
        spec = d.get("emits")
        espan = span_of(spec, d.key_spans.get("emits", where))
        if spec is None:
            return None
        if not isinstance(spec, LDict) or not isinstance(spec.get("case"), LStr):
            self.sink.error("schema", "`emits:` names the case type (`case:`) and its `payload:`", espan,
                            help="for example `emits: {case: fraud.suspicious_invoice, payload: {invoice: "
                                 "then.invoice}}`")
            return None
        check_keys(spec, EMITS_KEYS, "`emits:`", self.sink)
        payload: dict[str, tuple[str, str | None]] = {}
        spans: dict[str, Span | None] = {}
        raw = spec.get("payload")
        if raw is not None and not isinstance(raw, LDict):
            self.sink.error("schema", "`payload:` maps case fields to `ROLE.FIELD` or quoted text",
                            span_of(raw, espan))
            raw = None
        items = list(raw.items()) if isinstance(raw, LDict) else []
        for name, value in items:
            vspan = span_of(value, raw.key_spans.get(name) if isinstance(raw, LDict) else espan)
            spans[str(name)] = vspan
            if isinstance(value, LStr) and value.style in ('"', "'"):
                payload[str(name)] = ("", str(value))
                continue
            role, _, fname = str(value).partition(".")
            if not isinstance(value, LStr) or role not in ROLES[pattern] or not fname:
                self.sink.error("schema", f"`{name}: {value}`: a payload value is `ROLE.FIELD` or quoted text",
                                vspan, help=f"the roles of a {pattern}: "
                                f"{', '.join(f'`{r}`' for r in ROLES[pattern])}; quote text: `\"...\"`")
                continue
            et = roles.get(role)
            if et is not None and et.field_type(fname) is None:
                help_, sug = suggest_help(fname, et.field_names(), "fields")
                self.sink.error("unknown_name", f"event type `{et.name}` has no field `{fname}`",
                                vspan.shifted(col=len(role) + 1, length=len(fname)) if vspan else None,
                                help=help_, suggestion=sug)
                continue
            payload[str(name)] = (role, fname)
        agent = spec.get("agent")
        return (str(spec["case"]), payload, str(agent) if isinstance(agent, LStr) else None, espan, spans)


def _same_kind(a: Type, b: Type) -> bool:
    if a.kind == "ref" or b.kind == "ref":
        return a.kind == b.kind == "ref"
    return a.kind == b.kind


def check_emits(streams: list[CompiledStream], case_schemas: dict[str, Type], sink: DiagnosticSink) -> None:
    """Every correlation emits a case type some ruleset decides, with a payload that fits its `case:`."""
    for s in streams:
        for c in s.correlations:
            schema = case_schemas.get(c.case_type)
            if schema is None:
                help_, _ = suggest_help(c.case_type, case_schemas, "case types")
                sink.error("no_ruleset", f"correlation `{c.id}` emits case type `{c.case_type}`, which no ruleset "
                           "decides", c.emits_span, help=help_ or "add a ruleset with this `on:`")
                continue
            fields = schema.field_map()
            for name, (role, fname) in c.payload.items():
                want = fields.get(name)
                where = c.payload_spans.get(name)
                if want is None:
                    help_, sug = suggest_help(name, fields, "case fields")
                    sink.error("unknown_name", f"case type `{c.case_type}` has no field `{name}`", where,
                               help=help_, suggestion=sug)
                    continue
                got = STRING if not role else _role_field(s, c, role, fname)
                if got is not None and not _fits(got, want):
                    sink.error("type_mismatch", f"case field `{name}` is {want}, but `{role + '.' if role else ''}"
                               f"{fname if role else 'text'}` is {got}", where)
            for name, t in fields.items():
                if not t.optional and name not in c.payload:
                    sink.error("schema", f"correlation `{c.id}` emits no `{name}`, which case type "
                               f"`{c.case_type}` requires ({t})", c.emits_span,
                               help=f"add `{name}: ROLE.FIELD` under `payload:`")


def _role_field(s: CompiledStream, c: Correlation, role: str, fname: str | None) -> Type | None:
    event = c.prior if role == "first" else c.trigger
    et = s.events.get(event)
    return et.field_type(fname or "") if et is not None else None


def _fits(got: Type, want: Type) -> bool:
    if want.kind == "any" or got.kind == "any":
        return True
    if got.kind == "datetime":
        return want.kind in ("string", "date")
    if want.kind == "ref":
        return got.kind == "ref" and (got.cls == want.cls)
    if want.kind == "date":
        return got.kind in ("date", "string")
    return got.kind == want.kind


__all__ = ["CompiledStream", "Correlation", "EventType", "StreamCompiler", "check_emits",
           "parse_duration", "stream_file"]
