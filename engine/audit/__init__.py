"""The tamper-evident audit log: hash-chained events of every decision step, traces, reports.

`AuditLog` stores and verifies the chain; `Masker` keeps personal data out of it; `jsonable`
converts rich values to the JSON-native data an event holds; `decision_events` is what one
decision records. See `engine/audit/log.py` for how the chain works and what it cannot catch.
"""

from engine.audit.canonical import AuditError, jsonable
from engine.audit.chain import AuditEvent, VerifyReport
from engine.audit.log import AuditLog, hmac_key_from_env
from engine.audit.mask import Masker
from engine.audit.settings import default_audit_url, open_audit_log
from engine.audit.trail import decision_events, execution_event, review_event
from engine.canonical import canonical_json

__all__ = ["AuditError", "AuditEvent", "AuditLog", "Masker", "VerifyReport", "canonical_json", "decision_events",
           "default_audit_url", "execution_event", "hmac_key_from_env", "jsonable", "open_audit_log",
           "review_event"]
