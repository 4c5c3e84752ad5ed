"""The audit log of a workspace: where it lives, which masking rules and which key it uses (its settings).

    [audit]                       # rulebridge.toml, all optional
    url = ""                      # SQLAlchemy URL; empty = the workspace's state database
    mask = "rules/audit.yaml"     # the masking rules (a missing default file = no masking)
    synchronous = "NORMAL"        # SQLite: NORMAL (default) or FULL (fsync at every commit)

The URL is `RULEBRIDGE_AUDIT_URL`, else `[audit] url`, else the database of the review queue
(so one SQLite file holds the workspace's state by default). The signing key comes only from
the environment (`RULEBRIDGE_AUDIT_HMAC_KEY`), never from a file in the workspace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import DiagnosticSink, LoadError
from engine.storage import Database, state_url

from .log import AuditLog, hmac_key_from_env
from .mask import Masker

AUDIT_URL_ENV = "RULEBRIDGE_AUDIT_URL"  # read by `engine.config` (it overrides `[audit] url`)
DEFAULT_MASK_FILE = "rules/audit.yaml"


def _config(workspace: Path) -> Any:
    from engine.config import load_config

    sink = DiagnosticSink()
    cfg = load_config(Path(workspace).resolve(), sink)
    if sink.errors:
        raise LoadError(sink.items)
    return cfg


def default_audit_url(workspace: Path, cfg: Any = None, *, state: str | None = None) -> str:
    """`RULEBRIDGE_AUDIT_URL`, else `[audit] url`, else the workspace's state database (`state`, or
    as `engine.storage.state_url` chooses it)."""
    cfg = cfg if cfg is not None else _config(workspace)  # `[audit] url`: RULEBRIDGE_AUDIT_URL overrides it
    return (str(cfg.section("audit").get("url") or "")
            or state_url(Path(workspace).resolve(), cfg, state))


def load_masker(workspace: Path) -> Masker:
    """The masking rules of a workspace; none when the default file does not exist.

    A file named in `[audit] mask` must exist; any problem in it is a `LoadError`."""
    root = Path(workspace).resolve()
    named = _config(root).data.get("audit", {}).get("mask")  # as written, not a default filled in
    path = root / str(named or DEFAULT_MASK_FILE)
    if not named and not path.exists():
        return Masker()
    return Masker.load(path)


def open_audit_log(workspace: Path, *, url: str | None = None, create: bool = True,
                   now: Callable[[], dt.datetime] | None = None, database: Database | None = None) -> AuditLog:
    """The workspace's audit log with its masking rules and the key from the environment; on
    `database` (the state database, shared with the other stores) when given, else at `url`."""
    root = Path(workspace).resolve()
    cfg = _config(root)
    sync = str(cfg.section("audit").get("synchronous") or "NORMAL")
    masker = load_masker(root)
    return AuditLog(database or url or default_audit_url(root, cfg), hmac_key=hmac_key_from_env(dict(cfg.environ)),
                    masker=masker or None, now=now, create=create, synchronous=sync)


def read_audit_log(workspace: Path, *, url: str | None = None) -> AuditLog:
    """The workspace's audit log for reading (verify, show, export, stats): it must exist
    (`audit_not_found` otherwise), signatures are checked with the key from the environment, and
    no masking rules are loaded (nothing is written)."""
    root = Path(workspace).resolve()
    cfg = _config(root)
    return AuditLog(url or default_audit_url(root, cfg), hmac_key=hmac_key_from_env(dict(cfg.environ)),
                    create=False)
