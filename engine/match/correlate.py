"""Correlations over a stream of events: durable-rules' Rete joins, windows kept in event time.

What durable-rules does: each correlation is one durable-rules ruleset of one rule, a join of
two facts — an earlier event `p` and the event `e` that completes the pattern — on the `same:`
fields, with the window tested in event time (`p.t <= e.t <= p.t + window`, integer
microseconds). Earlier events stay in its sessions as facts; the completing event is asserted,
every match it makes is read, and it is retracted. The Rete network answers "which kept events
of this key lie within the window before this one".

What Python does: it checks and normalises each event, refuses one earlier than the latest
seen (`event_out_of_order`: the windows are in event time and state older than the window is
dropped, so a late event could miss matches), decides what a pattern's matches mean (a sequence
pairs the `then` event with the latest `first` in its window; a count needs `count - 1` earlier
events in the window; an absence needs none), and keeps memory flat: per key it keeps at most
the events a pattern can still use (sequence and absence: the latest one; count: the latest
`count - 1`; the result is the same, since the latest are the last to leave the window), and
every kept event is retracted as soon as the watermark moves past its window.

durable-rules' own timers run on wall-clock time, not event time, so they are not used: a
file of last month's events replays in seconds with the same answers.

Sessions: a key is hashed to one of `SESSIONS` session ids (never one per event or key, never
`delete_state`); one ruleset per correlation and correlator (its state is this correlator's),
named uniquely in the process.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import json
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from engine.errors import CaseError, Diagnostic, shown, suggest_help
from engine.lang.payload import validate_payload
from engine.lang.stream import CompiledStream, Correlation, EventType

from .durable import MatcherError, _dumps

SESSIONS = 64  # session ids per correlation (durable-rules fails past ~1,024 per ruleset)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_names = itertools.count()
MAX_EVENT_ID = 200


@dataclass(frozen=True)
class Event:
    """A checked event: its type, id, time (`at` as given, `t` in microseconds since 1970 UTC)
    and its fields as JSON values (IRIs expanded, dates as ISO text)."""

    type: str
    id: str
    at: str
    t: int
    fields: dict[str, Any]

    def value(self, name: str) -> Any:
        if name == "at":
            return self.at
        if name == "id":
            return self.id
        return self.fields.get(name)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "at": self.at, "payload": self.fields}


@dataclass
class Emitted:
    """A case a correlation emits, and what caused it: the correlation and the events it matched."""

    correlation: Correlation
    stream: str
    case: dict[str, Any]
    events: list[Event] = field(default_factory=list)

    def cause(self) -> dict[str, Any]:
        c = self.correlation
        return {"stream": self.stream, "correlation": c.id, "pattern": c.pattern, "within_s": c.window_s,
                "same": list(c.same), "events": [e.to_json() for e in self.events]}


def _bad(message: str, code: str = "event_invalid", help: str | None = None) -> CaseError:
    return CaseError([Diagnostic(code, message, help=help)])


def event_time(value: Any) -> tuple[str, int]:
    """(`at` as given, microseconds since 1970 UTC) of an ISO 8601 date-time; naive times are UTC."""
    if not isinstance(value, str):
        raise _bad("the event has no `at` (its time, ISO 8601: `2026-03-01T09:30:00Z`)")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"`at`: {shown(value, 60)} is not an ISO 8601 date-time",
                   help="for example `2026-03-01T09:30:00Z` or `2026-03-01T10:30:00+01:00`") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return value, (when - _EPOCH) // _US


def parse_event(data: Any, events: dict[str, EventType], prefixes: dict[str, str]) -> Event:
    """A JSON event `{type, at, id?, payload}` checked against its event type (`CaseError` if not)."""
    if not isinstance(data, dict):
        raise _bad("an event is a JSON object with `type`, `at` and `payload`")
    unknown = sorted(set(data) - {"type", "at", "id", "payload"}, key=str)
    if unknown:
        raise _bad(f"unknown event key `{shown(str(unknown[0]), 40)}`; put business fields under `payload`")
    etype = data.get("type")
    et = events.get(etype) if isinstance(etype, str) else None
    if et is None or not isinstance(etype, str):
        help_, _ = suggest_help(str(etype), events, "event types")
        raise _bad(f"unknown event type `{shown(str(etype), 80)}`", "event_type_unknown", help_)
    at, t = event_time(data.get("at"))
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise _bad("`payload` must be a JSON object")
    converted, problems = validate_payload(et.schema, payload, prefixes)
    if problems:
        raise CaseError([Diagnostic("event_invalid", p.message, help=p.help) for p in problems])
    fields = {k: _native(v) for k, v in converted.items()}
    ident = data.get("id")
    if ident is None:
        digest = json.dumps([etype, at, fields], sort_keys=True, default=str, ensure_ascii=False)
        ident = "ev-" + hashlib.sha256(digest.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    elif not isinstance(ident, str) or not ident or len(ident) > MAX_EVENT_ID:
        raise _bad(f"`id` must be text of 1 to {MAX_EVENT_ID} characters")
    return Event(etype, ident, at, t, fields)


def _native(v: Any) -> Any:
    iri = getattr(v, "iri", None)
    if iri is not None:
        return str(iri)
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return [_native(x) for x in v]
    if isinstance(v, dict):
        return {k: _native(x) for k, x in v.items()}
    return v


class _Kept:
    """An earlier event held as a fact in a session."""

    __slots__ = ("alive", "event", "fid", "key", "seq", "text")

    def __init__(self, event: Event, key: str, seq: int, text: str):
        self.event, self.key, self.seq, self.text, self.alive = event, key, seq, text, True
        self.fid = f"p{seq}"


class _Net:
    """One correlation as one durable-rules ruleset, and the events kept in its sessions."""

    def __init__(self, c: Correlation, stream: str):
        import durable_rules_engine as dre

        self.dre, self.c, self.stream = dre, c, stream
        self.window_us = c.window_s * 1_000_000
        self.cap = max(1, c.count - 1) if c.pattern == "count" else 1
        joins: list[dict[str, Any]] = [{"r": "e"}]
        joins += [{f"k{i}": {"p": f"k{i}"}} for i in range(len(c.same))]
        joins += [{"$gte": {"t": {"p": "t"}}}, {"$lte": {"t": {"$add": {"$l": {"p": "t"}, "$r": self.window_us}}}}]
        definition = {"c": {"all": [{"p": {"r": "p"}}, {"e": {"$and": joins}}]}}
        text = _dumps(definition)
        self.name = f"rbc{next(_names)}_{hashlib.sha256(text.encode()).hexdigest()[:10]}"
        self.handle = dre.create_ruleset(self.name, text)
        self.by_key: dict[str, collections.deque[_Kept]] = {}
        self.by_time: collections.deque[_Kept] = collections.deque()  # arrival order = event-time order
        self.by_id: dict[str, _Kept] = {}
        self.ids = itertools.count()

    def _key(self, ev: Event) -> tuple[str, str, str]:
        """The key's fields as JSON (for the fact), its identity, and its session id."""
        parts = [f'"k{i}": {_dumps(ev.value(f))}' for i, f in enumerate(self.c.same)]
        body = ", ".join(parts)
        return body, body, str(zlib.crc32(body.encode("utf-8", "surrogatepass")) % SESSIONS)

    def _fact(self, role: str, fid: str, sid: str, body: str, t: int) -> str:
        return f'{{"sid": "{sid}", "id": "{fid}", "r": "{role}", "t": {t}{", " if body else ""}{body}}}'

    def expire(self, t: int) -> None:
        """Retract every kept event older than the window before `t` (the watermark)."""
        horizon = t - self.window_us
        q = self.by_time
        while q and q[0].event.t < horizon:
            self._drop(q.popleft())

    def _drop(self, k: _Kept) -> None:
        if not k.alive:
            return
        k.alive = False
        try:
            self.dre.retract_fact(self.handle, k.text)
        except self.dre.error as exc:
            raise MatcherError(str(exc)) from exc
        del self.by_id[k.fid]
        dq = self.by_key.get(k.key)
        if dq is not None:
            if dq and dq[0] is k:
                dq.popleft()
            else:
                dq.remove(k)
            if not dq:
                del self.by_key[k.key]

    def observe(self, ev: Event) -> Emitted | None:
        c, dre = self.c, self.dre
        self.expire(ev.t)
        body, key, sid = self._key(ev)
        out = None
        if ev.type == c.trigger:
            text = self._fact("e", f"e{next(self.ids)}", sid, body, ev.t)
            found: list[_Kept] = []
            try:
                state = dre.assert_fact(self.handle, text)[1]
                res = dre.start_action_for_state(self.handle, state)
                result = res[1] if res else None
                while result:
                    fid = json.loads(result)["c"]["p"]["id"]
                    found.append(self.by_id[fid])
                    result = dre.complete_and_start_action(self.handle, state)
            except dre.error as exc:
                raise MatcherError(str(exc)) from exc
            finally:
                dre.retract_fact(self.handle, text)
            found.sort(key=lambda k: k.seq)  # arrival order
            out = self._emit(ev, [k.event for k in found])
        if ev.type == c.prior:
            seq = next(self.ids)
            kept = _Kept(ev, key, seq, self._fact("p", f"p{seq}", sid, body, ev.t))
            try:
                dre.assert_fact(self.handle, kept.text)
            except dre.error as exc:
                raise MatcherError(str(exc)) from exc
            self.by_id[kept.fid] = kept
            self.by_time.append(kept)
            dq = self.by_key.setdefault(key, collections.deque())
            dq.append(kept)
            if len(dq) > self.cap:  # the oldest can no longer change an answer
                self._drop(dq[0])
        return out

    def _emit(self, ev: Event, earlier: list[Event]) -> Emitted | None:
        c = self.c
        if c.pattern == "sequence":
            if not earlier:
                return None
            roles, events = {"first": earlier[-1], "then": ev}, [earlier[-1], ev]
        elif c.pattern == "count":
            if len(earlier) < c.count - 1:
                return None
            events = [*earlier[-(c.count - 1):], ev]
            roles = {"first": events[0], "event": ev}
        else:
            if earlier:
                return None
            roles, events = {"event": ev}, [ev]
        # a payload value is a role's field, or (role "") the text written
        payload = {name: roles[role].value(fname or "") if role else fname
                   for name, (role, fname) in c.payload.items()}
        case: dict[str, Any] = {"type": c.case_type, "payload": payload, "id": f"{c.id}@{ev.id}",
                                "as_of": _utc_date(ev.t)}
        if c.agent:
            case["agent"] = c.agent
        return Emitted(c, self.stream, case, events)

    def retained(self) -> int:
        return len(self.by_id)

    def facts_in_sessions(self) -> int:
        """The facts durable-rules holds for this correlation, counted in its sessions (slow: tests)."""
        n = 0
        for sid in range(SESSIONS):
            try:
                n += len(json.loads(self.dre.get_facts(self.handle, str(sid))))
            except self.dre.error:  # a session never used (error 309)
                continue
        return n


def _utc_date(t: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=t)).date().isoformat()


class Correlator:
    """Every correlation of a workspace's stream files, fed one event at a time, in event-time order."""

    def __init__(self, streams: list[CompiledStream], prefixes: dict[str, str]):
        self.prefixes = prefixes
        self.events: dict[str, EventType] = {}
        self.nets: dict[str, list[_Net]] = {}
        for s in streams:
            self.events.update(s.events)
        for s in streams:
            for c in s.correlations:
                net = _Net(c, s.name)
                for etype in {c.prior, c.trigger}:
                    self.nets.setdefault(etype, []).append(net)
        self.watermark: int | None = None
        self.lock = threading.Lock()
        self.observed = 0

    def parse(self, data: Any) -> Event:
        """A JSON event, checked against the declared event types."""
        return parse_event(data, self.events, self.prefixes)

    def observe(self, ev: Event) -> list[Emitted]:
        """The cases the event completes, in correlation order. An event earlier than the latest
        one seen is refused (`event_out_of_order`) before it changes anything."""
        with self.lock:
            if self.watermark is not None and ev.t < self.watermark:
                raise _bad(f"event `{shown(ev.id, 60)}` at {shown(ev.at, 40)} is earlier than an event "
                           "already observed", "event_out_of_order",
                           help="send events in the order of their `at`; windows are kept in event time")
            self.watermark = ev.t
            self.observed += 1
            out = []
            for net in self.nets.get(ev.type, ()):
                emitted = net.observe(ev)
                if emitted is not None:
                    out.append(emitted)
            return out

    def retained(self) -> int:
        """How many events are kept as facts in durable-rules' sessions, over every correlation."""
        return sum(n.retained() for n in self._unique())

    def facts_in_sessions(self) -> int:
        """The facts durable-rules itself holds, over every correlation (asks every session: tests)."""
        return sum(n.facts_in_sessions() for n in self._unique())

    def _unique(self) -> list[_Net]:
        return list({id(n): n for nets in self.nets.values() for n in nets}.values())


__all__ = ["Correlator", "Emitted", "Event", "event_time", "parse_event"]
