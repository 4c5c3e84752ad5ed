"""`Idempotency-Key` for the HTTP requests that act: the first response is kept, a retry with the
same key gets it again, a key reused for another request is refused.

The engine already runs a decision's actions exactly once (the execution ledger); this table
adds what HTTP clients expect on top: a retried `POST /v1/decisions?execute=true` does not make
a second decision, and the same key sent with a different request is a 409
(`idempotency_key_reused`), not a silent replay of the wrong answer. Keys are scoped to the
caller (a hash of the bearer token, or anonymous) and kept in the state database, so a restart
keeps them. A request still running holds its key (`idempotency_in_progress`); one that failed
releases it so the client may try again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.errors import RulebridgeError
from engine.storage import Database, Store, ensure_tables

MAX_KEY_CHARS = 200

metadata = MetaData()
http_idempotency = Table(
    "http_idempotency", metadata,
    Column("scope", String(64), primary_key=True),  # sha256 of the bearer token ("" without one)
    Column("key", String(MAX_KEY_CHARS), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of what was asked
    Column("status", Integer, nullable=False),  # 0 while the first request runs
    Column("body", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class IdempotencyError(RulebridgeError):
    """A key that cannot be used for this request (`idempotency_key_reused`, `idempotency_in_progress`,
    `idempotency_key_invalid`)."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Kept:
    """The response first given for a key."""

    status: int
    body: bytes


def fingerprint(*parts: str | bytes) -> str:
    """A hash of what a request asks (method, path, body)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def scope_of(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


class IdempotencyStore(Store):
    """Keys and their first responses, in the state database."""

    def __init__(self, target: Database | str):
        self._open(target)
        ensure_tables(metadata, self.db)

    def claim(self, scope: str, key: str, fp: str) -> Kept | None:
        """Hold `key` for this request (None: go ahead), or the response kept for it."""
        if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
            raise IdempotencyError(f"an `Idempotency-Key` is 1 to {MAX_KEY_CHARS} printable characters",
                                   code="idempotency_key_invalid")
        try:
            with self.database.writer.begin() as conn:
                conn.execute(insert(http_idempotency).values(scope=scope, key=key, fingerprint=fp, status=0,
                                                             body=None, created_at=dt.datetime.now(dt.UTC)))
            return None
        except IntegrityError:
            pass
        with self.db.connect() as conn:
            row = conn.execute(select(http_idempotency).where(http_idempotency.c.scope == scope,
                                                              http_idempotency.c.key == key)).first()
        if row is None:  # released meanwhile: the caller may retry
            raise IdempotencyError("the request with this `Idempotency-Key` just ended; retry",
                                   code="idempotency_in_progress")
        if row.fingerprint != fp:
            raise IdempotencyError("this `Idempotency-Key` was used for another request",
                                   code="idempotency_key_reused")
        if row.status == 0:
            raise IdempotencyError("a request with this `Idempotency-Key` is still running",
                                   code="idempotency_in_progress")
        return Kept(int(row.status), bytes(row.body or b""))

    def keep(self, scope: str, key: str, status: int, body: bytes) -> None:
        """The response of the request that held `key`."""
        with self.database.writer.begin() as conn:
            conn.execute(update(http_idempotency).where(http_idempotency.c.scope == scope,
                                                        http_idempotency.c.key == key)
                         .values(status=status, body=body))

    def release(self, scope: str, key: str) -> None:
        """The request failed: the key is free again."""
        with self.database.writer.begin() as conn:
            conn.execute(delete(http_idempotency).where(http_idempotency.c.scope == scope,
                                                        http_idempotency.c.key == key,
                                                        http_idempotency.c.status == 0))
