"""Keys for non-human identities (agents) and reviewers: issued, rotated, revoked, checked.

What an identity may do is policy, declared in the workspace (`rules/agents.yaml`, reviewed in
version control). Its keys are secrets and live in the state database, never in a file: a key is
shown once when issued and stored only as the SHA-256 of its secret part. A key is
`rbk_<key id>_<secret>`; the key id finds the row, the secret is compared in constant time.
SHA-256 (not a password hash) is enough because the secret is 256 random bits, not a
human-chosen password.

Revoking an identity revokes all its keys and refuses it even where keys are not required (a
case that merely names it). Checks read a small in-memory snapshot refreshed at most every
`refresh` seconds (default 1 s), so a revocation made by another process takes effect within
that time; one made through the same store takes effect at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, insert, select, update

from engine.errors import AuthError

__all__ = ["AuthError", "IdentityStore", "IssuedKey", "KeyRecord"]
from engine.storage import Database, Store, ensure_tables, utc

KINDS = ("agent", "reviewer")
_TOKEN = re.compile(r"rbk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")

metadata = MetaData()
identity_keys = Table(
    "identity_keys", metadata,
    Column("key_id", String(12), primary_key=True),
    Column("principal", String(200), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=True),
)
identity_revocations = Table(
    "identity_revocations", metadata,
    Column("principal", String(200), primary_key=True),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    principal: str
    kind: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
    note: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "principal": self.principal, "kind": self.kind,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "note": self.note}


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `token` is shown once and never stored."""

    record: KeyRecord
    token: str


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class IdentityStore(Store):
    """Issued keys and revoked identities in the state database."""

    def __init__(self, target: Database | str, *, clock: Callable[[], dt.datetime] | None = None,
                 refresh: float = 1.0):
        self._open(target)
        ensure_tables(metadata, self.db)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.refresh = refresh
        self._lock = threading.Lock()
        self._snapshot: tuple[float, dict[str, tuple[str, str, str, bool]], dict[str, str]] | None = None
        self._generation = 0  # bumped by every change made here: a read that started before it is stale

    # --- administration (the `rulebridge agents` commands) -----------------------------------
    def issue(self, principal: str, kind: str = "agent", *, note: str | None = None) -> IssuedKey:
        """A new key for `principal`; an identity that was revoked is reinstated by this."""
        return self._issue(principal, kind, note=note, rotate=False)[0]

    def rotate(self, principal: str, kind: str = "agent") -> tuple[IssuedKey, int]:
        """A new key; every older key of `principal` is revoked in the same transaction.

        The principal's keys are locked first (PostgreSQL: `FOR UPDATE`; SQLite serializes
        writers anyway), so concurrent rotations end with exactly one active key."""
        return self._issue(principal, kind, note="rotated", rotate=True)

    def _issue(self, principal: str, kind: str, *, note: str | None, rotate: bool) -> tuple[IssuedKey, int]:
        if kind not in KINDS:
            raise AuthError(f"unknown identity kind `{kind}`", code="auth_wrong_kind")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = self.clock()
        revoked = 0
        with self.database.writer.begin() as conn:
            if rotate:
                conn.execute(select(identity_keys.c.key_id).where(identity_keys.c.principal == principal)
                             .with_for_update()).all()
            conn.execute(identity_revocations.delete().where(identity_revocations.c.principal == principal))
            conn.execute(insert(identity_keys).values(key_id=key_id, principal=principal, kind=kind,
                                                      secret_sha256=_sha(secret), created_at=now, note=note))
            if rotate:
                revoked = conn.execute(update(identity_keys).where(
                    identity_keys.c.principal == principal, identity_keys.c.key_id != key_id,
                    identity_keys.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount
        self._invalidate()
        return IssuedKey(KeyRecord(key_id, principal, kind, now, None, note), f"rbk_{key_id}_{secret}"), revoked

    def revoke(self, principal: str, reason: str) -> int:
        """Revoke the identity and all its keys; returns how many active keys were revoked."""
        now = self.clock()
        with self.database.writer.begin() as conn:
            n = conn.execute(update(identity_keys).where(identity_keys.c.principal == principal,
                                                         identity_keys.c.revoked_at.is_(None))
                             .values(revoked_at=now)).rowcount
            conn.execute(identity_revocations.delete().where(identity_revocations.c.principal == principal))
            conn.execute(insert(identity_revocations).values(principal=principal, revoked_at=now, reason=reason))
        self._invalidate()
        return n

    def keys(self, principal: str | None = None) -> list[KeyRecord]:
        q = select(identity_keys).order_by(identity_keys.c.principal, identity_keys.c.created_at)
        if principal is not None:
            q = q.where(identity_keys.c.principal == principal)
        with self.db.connect() as conn:
            return [KeyRecord(r.key_id, r.principal, r.kind, utc(r.created_at), utc(r.revoked_at), r.note)
                    for r in conn.execute(q)]

    def revocations(self) -> dict[str, str]:
        """Revoked identities and why."""
        return dict(self._current()[2])

    # --- checks (every decision, every review) -----------------------------------------------
    def authenticate(self, token: str, kind: str | None = None) -> str:
        """The principal a key belongs to; refuses malformed, unknown and revoked keys."""
        m = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
        if m is None:
            raise AuthError("malformed key: expected `rbk_<key id>_<secret>`", code="auth_key_malformed")
        key_id, secret = m.groups()
        row = self._current()[1].get(key_id)
        if row is None or not hmac.compare_digest(row[2], _sha(secret)):
            raise AuthError(f"unknown key `rbk_{key_id}_…`", code="auth_key_unknown")
        principal, row_kind, _, active = row
        if not active:
            raise AuthError(f"key `rbk_{key_id}_…` of `{principal}` was revoked", code="auth_key_revoked")
        if kind is not None and row_kind != kind:
            raise AuthError(f"key `rbk_{key_id}_…` belongs to {row_kind} `{principal}`, not to a {kind}",
                            code="auth_wrong_kind")
        self.check_not_revoked(principal)
        return principal

    def check_not_revoked(self, principal: str) -> None:
        reason = self._current()[2].get(principal)
        if reason is not None:
            raise AuthError(f"identity `{principal}` is revoked: {reason}", code="auth_identity_revoked")

    def _invalidate(self) -> None:
        with self._lock:
            self._snapshot = None
            self._generation += 1

    def _current(self) -> tuple[float, dict[str, tuple[str, str, str, bool]], dict[str, str]]:
        snap = self._snapshot
        if snap is not None and time.monotonic() - snap[0] < self.refresh:
            return snap
        generation = self._generation
        with self.db.connect() as conn:
            keys = {r.key_id: (r.principal, r.kind, r.secret_sha256, r.revoked_at is None)
                    for r in conn.execute(select(identity_keys))}
            revoked = {r.principal: r.reason for r in conn.execute(select(identity_revocations))}
        snap = (time.monotonic(), keys, revoked)
        with self._lock:
            if self._generation == generation:  # a change made meanwhile: do not cache what we read
                self._snapshot = snap
        return snap
