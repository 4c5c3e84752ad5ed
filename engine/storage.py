"""Where the engine keeps its state: one SQLAlchemy URL for the review queue, agent keys,
execution ledger and audit log — SQLite in the workspace by default, PostgreSQL by URL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SAEngine


def utc(v: dt.datetime | None) -> dt.datetime | None:
    """A datetime with its zone (SQLite drops it; the engine stores UTC)."""
    if v is None:
        return None
    return v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)


def default_url(root: Path) -> str:
    """The embedded default: `.rulebridge/state.db` in the workspace."""
    return f"sqlite:///{(root / '.rulebridge' / 'state.db').as_posix()}"


# When a list, every engine `open_db` makes is appended, so its owner (a test using a server
# database) can close their pools before dropping the database.
tracked: list[SAEngine] | None = None


def open_db(url: str) -> SAEngine:
    """An SQLAlchemy engine; SQLite gets WAL and a busy timeout, and its folder is created."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(url, future=True, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):
        @event.listens_for(eng, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    if tracked is not None:
        tracked.append(eng)
    return eng
