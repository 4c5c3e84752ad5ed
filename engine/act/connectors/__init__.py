"""Connectors: how an accepted action reaches a system of record (see `base.Connector`).

`kg` (the workspace graph, SPARQL Update), `sql` (SQLAlchemy), `http` (httpx) and any class
named `module:Class` (`kind = "python"`); `registry.build_connectors` makes them from
`rulebridge.toml`, each wrapped in `resilience.Resilient` (retries, circuit breaker). The
kinds are imported on demand: this package stays cheap to import.
"""

from .base import Connector, ConnectorError, ExecutionStatus, PermanentError, TransientError
from .resilience import CIRCUIT_OPEN, Resilient

__all__ = ["CIRCUIT_OPEN", "Connector", "ConnectorError", "ExecutionStatus", "PermanentError", "Resilient",
           "TransientError"]
