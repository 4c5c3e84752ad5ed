"""Retries with back-off and a circuit breaker around any connector — one wrapper for all of them.

`Resilient(connector)` is itself a `Connector`: the executor wraps each connector once and never
sees a retry. Only `TransientError` is retried (tenacity, exponential back-off with jitter);
a `PermanentError`, or any other exception, surfaces at once. Retrying `execute` is safe
because every attempt carries the same idempotency key, and each connector makes a repeated
key harmless (a marker in the graph or database, the `Idempotency-Key` header over HTTP).

The breaker (pybreaker, one per wrapped connector) counts transient failures; after
`breaker_failures` in a row it opens and every call is refused at once with
`TransientError(code="connector_circuit_open")`, without touching the system, until
`breaker_reset` seconds have passed; then one trial call decides whether it closes again.

Why the call runs outside `CircuitBreaker.call`: pybreaker holds the breaker's lock for the
whole call, so one slow system would queue every other caller of the connector behind it —
even the ones the open circuit should refuse at once. Here the state is read first (refuse
fast when open), the call runs unlocked, and its outcome is then fed to the breaker, whose
state machine (closed → open → half-open) stays pybreaker's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .base import Connector, ExecutionStatus, TransientError

T = TypeVar("T")
CIRCUIT_OPEN = "connector_circuit_open"


def _worth_retrying(exc: BaseException) -> bool:
    # An open circuit will still be open after a back-off of a second: give up at once.
    return isinstance(exc, TransientError) and exc.code != CIRCUIT_OPEN


class Resilient:
    """A connector with retries (transient faults only) and its own circuit breaker."""

    def __init__(self, connector: Connector, *, retries: int = 3, backoff: float = 0.2, max_backoff: float = 5.0,
                 breaker_failures: int = 5, breaker_reset: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.inner = connector
        self.name = connector.name
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._state = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        # A permanent fault (4xx, a constraint) means the system answered: it does not count.
        self.breaker = pybreaker.CircuitBreaker(fail_max=breaker_failures, reset_timeout=breaker_reset,
                                                exclude=[lambda e: not isinstance(e, TransientError)],
                                                state_storage=self._state, name=connector.name,
                                                throw_new_error_on_trip=False)
        self.attempts = 0  # calls that reached the wrapped connector (for metrics and tests)

    @property
    def circuit(self) -> str:
        """The breaker's state: closed, open or half-open."""
        return self.breaker.current_state

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Execute through the wrapped connector, retrying transient faults under the same key."""
        return self._retrying(lambda: self.inner.execute(action, params, key=key))

    def status(self, key: str) -> ExecutionStatus:
        """Ask the wrapped connector (a read: retried like an execution)."""
        return self._retrying(lambda: self.inner.status(key))

    def ready(self) -> None:
        """Make the wrapped connector ready to act (a python connector is imported on first use);
        raises `ConnectorConfigError` when it cannot be."""
        ready = getattr(self.inner, "ready", None)
        if callable(ready):
            ready()

    def close(self) -> None:
        """Close the wrapped connector (its pools and clients), if it has anything to close."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def _retrying(self, call: Callable[[], T]) -> T:
        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True, sleep=self._sleep,
                            wait=wait_exponential_jitter(multiplier=self.backoff, max=self.max_backoff,
                                                         jitter=self.backoff),
                            retry=retry_if_exception(_worth_retrying))
        result: T = retrying(self._attempt, call)
        return result

    def _refuse_if_open(self) -> None:
        if self._state.state != pybreaker.STATE_OPEN:
            return
        opened = self._state.opened_at
        left = self.breaker.reset_timeout - ((dt.datetime.now(dt.UTC) - opened).total_seconds()
                                            if opened else self.breaker.reset_timeout)
        if left > 0:
            raise TransientError(f"connector `{self.name}`: circuit open after {self.breaker.fail_max} failures "
                                 f"in a row; calls are refused for another {left:.1f} s", code=CIRCUIT_OPEN)

    def _attempt(self, call: Callable[[], T]) -> T:
        """One attempt: refused at once while the circuit is open; else run, then told to the breaker."""
        self._refuse_if_open()
        self.attempts += 1
        try:
            result = call()
        except Exception as exc:
            self._record(exc)
            raise
        self._record(None)
        return result

    def _record(self, exc: Exception | None) -> None:
        """Feed an outcome to pybreaker's state machine (it counts, opens, half-opens and closes)."""
        def replay() -> None:
            if exc is not None:
                raise exc

        # INVARIANT: what the system did is reported as it happened. A breaker that another
        # thread opened meanwhile must not turn an execution that took effect into an error.
        with contextlib.suppress(Exception):  # the caller raises the real outcome itself
            self.breaker.call(replay)


__all__ = ["CIRCUIT_OPEN", "Resilient"]
