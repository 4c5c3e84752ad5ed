"""Connectors: how an accepted action reaches a system of record (see `base.Connector`)."""

from .base import Connector, ConnectorError, ExecutionStatus, PermanentError, TransientError

__all__ = ["Connector", "ConnectorError", "ExecutionStatus", "PermanentError", "TransientError"]
