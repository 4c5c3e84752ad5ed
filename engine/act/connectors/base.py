"""The connector contract: one small class per kind of system of record.

A connector performs one action with its (already validated and verified) parameters, under an
idempotency key the executor derives from the decision and the exact action + parameters. It
never decides anything: what reaches it has passed the gate.

Faults are classified by the connector, because only it knows its system:

- `TransientError` — worth retrying (timeout, HTTP 5xx/429, connection refused, database
  locked). The executor retries with back-off (tenacity) behind a circuit breaker per connector.
- `PermanentError` — retrying cannot help (HTTP 4xx, a constraint violation, a template that
  matches nothing). The execution fails cleanly and is audited.

`status(key)` lets the executor reconcile an execution that was started but never recorded as
done (the process died in between): `"done"` or `"not_done"` when the connector can tell for
sure (the graph and SQL connectors write a marker with the key in the same transaction as the
change), `"unknown"` otherwise (then the ledger marks it for review, never guesses).

Writing a connector of your own (`examples/custom_connector.py` is one): any class with

- `name: str` — the connector's name in `rulebridge.toml`;
- `execute(action, params, *, key) -> dict` — perform the action once per `key`: a key seen
  before must not act again (return the earlier result); the returned dict must be JSON-able;
- `status(key) -> "done" | "not_done" | "unknown"` — `done`/`not_done` only when sure;
- a constructor `Class(name, *, bindings, options, root)`: `bindings` maps each action bound to
  this connector to its template (the keys of its `execute:` block besides `connector`),
  `options` holds the other keys of its `[connectors.NAME]` table, `root` is the workspace;

declared as `kind = "python"`, `class = "package.module:Class"` (an installed package, or a file
under the workspace root: `registry.locate_class`; imported on first use). Raise
`TransientError` or `PermanentError` with a stable `code`; retries and the circuit breaker are
added around it (`resilience.Resilient`), not written in it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from engine.errors import RulebridgeError

ExecutionStatus = Literal["done", "not_done", "unknown"]


class ConnectorError(RulebridgeError):
    """A connector could not perform an action; `code` is stable (connector_transient, ...)."""

    code = "connector_error"


class TransientError(ConnectorError):
    """A fault worth retrying: timeout, 5xx, connection refused, database locked."""

    code = "connector_transient"


class PermanentError(ConnectorError):
    """A fault retrying cannot fix: 4xx, a constraint violation, a bad binding."""

    code = "connector_permanent"


@runtime_checkable
class Connector(Protocol):
    """What the executor needs of a system of record."""

    name: str  # the connector's name in the workspace (`kg`, `erp_db`, `crm_api`, ...)

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Perform `action` once under idempotency `key`; return a JSON-able result.

        Raise `TransientError` or `PermanentError`; anything else counts as permanent.
        """
        ...

    def status(self, key: str) -> ExecutionStatus:
        """Whether the execution with `key` took effect: done, not_done, or unknown."""
        ...
