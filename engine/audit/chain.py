"""The hash chain: how an event is hashed and signed, and the pure check that walks a chain.

Each event's `hash` is sha256 over the canonical JSON (see `canonical.py`) of every other field,
`prev` and `seq` included, so changing, removing, inserting or reordering an event breaks
either its own hash or the link (`prev`) of the event after it. `sig` is HMAC-SHA256 of the
hash under a key the log never stores: without the key nobody can rewrite the chain, even
someone who recomputes every hash. The head row (last seq, last hash, count) is signed with the
same key (`sign_head`), so events cut from the end cannot be hidden by rewriting the head.

`ChainChecker` is the whole verification logic and does no I/O: the log feeds it stored rows in
`seq` order, and the same checker can verify an export.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from engine.canonical import canonical_json

SCHEMA_VERSION = 1
GENESIS = "0" * 64  # the `prev` of the first event
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_encode_text = json.encoder.encode_basestring  # the C encoder of a str, as ensure_ascii=False writes it


def _j(value: Any) -> str:
    """One value as canonical JSON; text (the common case) without the encoder's dispatch."""
    t = type(value)
    return _encode_text(value) if t is str else str(value) if t is int else _dumps(value)

# Stable reasons a chain is broken (API: the CLI, its JSON and the docs use them).
REASONS = {
    "seq_gap": "an event is missing: the next stored event has a higher seq than expected",
    "seq_out_of_order": "a stored seq is lower than expected (duplicated or moved event)",
    "hash_mismatch": "an event's content does not match its hash",
    "prev_mismatch": "an event does not link to the hash of the event before it",
    "bad_signature": "an event's HMAC signature is missing or wrong for the configured key",
    "unsupported_schema": "an event has a schema version this engine does not know",
    "head_mismatch": "the head row (last seq, last hash, count) disagrees with the stored events",
    "head_bad_signature": "the head row's HMAC signature is missing or wrong for the configured key",
    "anchor_mismatch": "an event does not have the hash recorded in an external anchor",
    "db_corrupt": "the database's own integrity check finds the file damaged (checked before the chain)",
}


@dataclass(frozen=True)
class AuditEvent:
    """One hash-chained record of one step of one decision (schema version 1)."""

    seq: int
    id: str
    schema: int
    ts: str  # UTC, ISO 8601 with microseconds: sorts as text in time order
    decision_id: str
    step: str
    agent: str
    data: dict[str, Any]
    prev: str
    hash: str
    sig: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.id, "schema": self.schema, "ts": self.ts,
                "decision_id": self.decision_id, "step": self.step, "agent": self.agent, "data": self.data,
                "prev": self.prev, "hash": self.hash, "sig": self.sig}


def hashed_text(*, seq: Any, id: Any, schema: Any, ts: Any, decision_id: Any, step: Any, agent: Any,
                data_text: str, prev: Any) -> str:
    """The canonical JSON of an event without `hash` and `sig`, `data` given as its canonical text.

    Keys in sorted order, each value JSON-encoded as stored: equal to
    `canonical_json({...every field..., "data": data})` whenever `data_text == canonical_json(data)`,
    without parsing `data` again (verify streams millions of rows through this).
    """
    return (f'{{"agent":{_j(agent)},"data":{data_text},"decision_id":{_j(decision_id)},'
            f'"id":{_j(id)},"prev":{_j(prev)},"schema":{_j(schema)},"seq":{_j(seq)},'
            f'"step":{_j(step)},"ts":{_j(ts)}}}')


def event_hash(text: str) -> str:
    """sha256 (hex) of a hashed text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sign(key: bytes, hash_hex: str) -> str:
    """HMAC-SHA256 (hex) of an event hash."""
    return hmac.new(key, hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def sign_head(key: bytes, seq: int, hash_hex: str, count: int) -> str:
    """HMAC-SHA256 (hex) of a head row. The text is prefixed so that no event's signature (an
    HMAC of a bare hash) can be copied into the head."""
    return hmac.new(key, f"rulebridge-audit-head:1:{seq}:{hash_hex}:{count}".encode("ascii"),
                    hashlib.sha256).hexdigest()


def hash_of(event: AuditEvent) -> str:
    """Recompute an event's hash from its fields (what an external verifier does)."""
    return event_hash(hashed_text(seq=event.seq, id=event.id, schema=event.schema, ts=event.ts,
                                  decision_id=event.decision_id, step=event.step, agent=event.agent,
                                  data_text=canonical_json(event.data), prev=event.prev))


@dataclass(frozen=True)
class Head:
    """The one-row anchor of the chain's tail: last seq, last hash, number of events, and their
    signature (`sign_head`; None when the log is written without a key)."""

    seq: int
    hash: str
    count: int
    sig: str | None = None


@dataclass
class VerifyReport:
    """The outcome of a verification: the FIRST broken event and why, or ok.

    `first_broken_seq` is the chain position where the stored log first differs from a valid
    chain: the tampered event itself, the position of a deleted event (its successor sits
    there), the first missing position after a truncation, or — when someone recomputed the
    hash of an edited event and no key is configured — the event after it, whose link breaks.
    """

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    first_broken_id: str | None = None
    reason: str | None = None
    message: str = ""
    head: Head | None = None
    signatures: str = "not_checked"  # checked | not_checked (no key configured)
    complete: bool = True  # False when `limit` stopped the walk: the head was not compared

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_broken_seq": self.first_broken_seq,
                "first_broken_id": self.first_broken_id, "reason": self.reason, "message": self.message,
                "head": None if self.head is None else self.head.__dict__, "signatures": self.signatures,
                "complete": self.complete}


@dataclass
class ChainChecker:
    """Walks stored events in `seq` order and stops at the first broken one.

    Rows are anything with the event attributes where `data` is the stored canonical text.
    `anchor` is an externally recorded (seq, hash): a chain rewritten from before that seq, or
    cut short of it, fails even without a key.
    """

    key: bytes | None = None
    anchor: tuple[int, str] | None = None
    expected: int = 1
    prev: str = GENESIS
    checked: int = 0
    broken: VerifyReport | None = field(default=None, repr=False)

    def _break(self, pos: int, event_id: str | None, reason: str, message: str) -> bool:
        self.broken = VerifyReport(False, self.checked, pos, event_id, reason, message)
        return False

    def feed(self, row: Any) -> bool:
        """Check the next stored row; False once the chain is broken (stop feeding)."""
        if self.broken is not None:
            return False
        pos, rid = self.expected, row.id
        seq = row.seq
        if type(seq) is not int or seq != pos:
            if type(seq) is int and seq > pos:
                return self._break(pos, rid, "seq_gap", f"expected seq {pos}, found seq {seq} (`{rid}`): "
                                   f"{'event' if seq == pos + 1 else 'events'} {pos}"
                                   f"{'' if seq == pos + 1 else f'..{seq - 1}'} missing")
            return self._break(pos, rid, "seq_out_of_order", f"expected seq {pos}, found seq {seq!r} (`{rid}`)")
        if not isinstance(row.data, str):
            return self._break(pos, rid, "hash_mismatch", f"event {pos} (`{rid}`): its data is not stored as text")
        digest = event_hash(hashed_text(seq=seq, id=rid, schema=row.schema, ts=row.ts, decision_id=row.decision_id,
                                        step=row.step, agent=row.agent, data_text=row.data, prev=row.prev))
        if digest != row.hash:
            return self._break(pos, rid, "hash_mismatch", f"event {pos} (`{rid}`): its content does not match "
                               "its hash (an edited field)")
        if row.prev != self.prev:
            return self._break(pos, rid, "prev_mismatch", f"event {pos} (`{rid}`): it does not link to the hash "
                               f"of event {pos - 1} (event {pos - 1} was rewritten, or this one was)")
        if self.key is not None:
            if not row.sig:
                return self._break(pos, rid, "bad_signature", f"event {pos} (`{rid}`): it is not signed")
            if not hmac.compare_digest(str(row.sig), sign(self.key, digest)):
                return self._break(pos, rid, "bad_signature", f"event {pos} (`{rid}`): its signature does not "
                                   "match (a rewritten event, or the wrong key)")
        if self.anchor is not None and seq == self.anchor[0] and digest != self.anchor[1]:
            return self._break(pos, rid, "anchor_mismatch", f"event {pos} (`{rid}`): its hash is not the "
                               "anchored one (the chain was rewritten up to here)")
        if row.schema != SCHEMA_VERSION:
            return self._break(pos, rid, "unsupported_schema", f"event {pos} (`{rid}`): schema version "
                               f"{row.schema!r} is not known (this engine reads version {SCHEMA_VERSION})")
        self.prev = digest
        self.expected += 1
        self.checked += 1
        return True

    def finish(self, head: Head | None, *, complete: bool = True) -> VerifyReport:
        """The report after the last row; with `complete`, the tail is compared with the head row."""
        signatures = "checked" if self.key is not None else "not_checked"
        report = self.broken
        if report is None:
            report = self._tail(head) if complete else None
        if report is None:
            report = VerifyReport(True, self.checked, complete=complete)
        report.head, report.signatures, report.complete = head, signatures, complete
        return report

    def _tail(self, head: Head | None) -> VerifyReport | None:
        last = self.checked
        if self.anchor is not None and self.anchor[0] > last:
            return VerifyReport(False, last, last + 1, None, "anchor_mismatch",
                                f"the log ends at seq {last}, before the anchored event {self.anchor[0]} "
                                "(events were removed from the end)")
        if head is None:
            return VerifyReport(False, last, last + 1, None, "head_mismatch", "the head row is missing")
        if head.seq == last and head.hash == self.prev and head.count == last:
            if self.key is None or hmac.compare_digest(str(head.sig or ""), sign_head(self.key, last, self.prev,
                                                                                        last)):
                return None
            # INVARIANT: with a key, a head that agrees with the events must also be signed: else
            # events may have been cut from the end and the head rewritten to the new last event.
            return VerifyReport(False, last, last + 1, None, "head_bad_signature",
                                f"the head row (seq {last}) is not signed with the configured key: events may "
                                "have been cut from the end and the head rewritten (or the key is wrong)")
        if head.seq != last:
            pos = min(head.seq, last) + 1 if isinstance(head.seq, int) else last + 1
            what = (f"the head says the last event is {head.seq} but the log ends at {last}"
                    + (": events were removed from the end" if isinstance(head.seq, int) and head.seq > last
                       else ": events were added after the head"))
        else:
            pos = max(last, 1)
            what = (f"the head's hash or count does not match event {last}" if last else
                    "the head of an empty log is not the genesis")
        return VerifyReport(False, last, pos, None, "head_mismatch", what)
