"""A writer process for the concurrency tests (importable by a `spawn`ed child)."""

from __future__ import annotations

from typing import Any


def append_worker(url: str, writer: str, rounds: int, per_round: int, start: Any, key: bytes | None) -> None:
    """Append `rounds` batches of `per_round` events tagged (writer, round, index), once every
    writer has passed the `start` barrier."""
    from engine.audit import AuditLog

    with AuditLog(url, hmac_key=key) as log:
        start.wait(timeout=60)
        for r in range(rounds):
            log.append_many([(f"{writer}-{r}", "step", writer, {"writer": writer, "round": r, "i": i})
                             for i in range(per_round)])
