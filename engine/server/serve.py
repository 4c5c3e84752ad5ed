"""`rulebridge serve`: the app under uvicorn, with the limits that keep a worker for real work.

- `timeout_keep_alive`: an idle keep-alive connection is closed after a few seconds;
- `h11_max_incomplete_event_size`: request line and headers are bounded (64 KiB);
- `limit_concurrency`: past it, new connections get a 503 at once instead of queueing forever;
- the body is bounded in size and in time by the app (`engine.server.limits`);
- `timeout_graceful_shutdown`: on SIGTERM/SIGINT no new connection is accepted, the requests in
  flight finish (up to this many seconds), then the engine is closed. A decision's records and
  an execution's ledger rows and events are written in one transaction each, so a request cut
  short by the timeout leaves either all of them or none (an execution started at a connector
  is reconciled from the ledger when the engine opens again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.server.limits import BODY_TIMEOUT_S, MAX_BODY_BYTES


@dataclass(frozen=True)
class ServeOptions:
    """How `rulebridge serve` listens."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    require_keys: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_S
    keep_alive_s: int = 5
    graceful_shutdown_s: int = 30
    limit_concurrency: int = 256
    max_header_bytes: int = 64 * 1024
    log_level: str = "info"


def serve(workspace: Path, options: ServeOptions) -> None:
    """Open the workspace, build the app and serve it until a signal stops it."""
    import uvicorn

    from engine.api import Engine
    from engine.server.app import create_app

    engine = Engine.open(workspace)
    engine.warm(freeze=True)  # a serving process: what is loaded stays out of the collector's way
    app = create_app(engine, require_keys=options.require_keys, max_body_bytes=options.max_body_bytes,
                     body_timeout=options.body_timeout, close_engine=True)
    uvicorn.run(app, host=options.host, port=options.port, workers=None, log_level=options.log_level,
                timeout_keep_alive=options.keep_alive_s, timeout_graceful_shutdown=options.graceful_shutdown_s,
                limit_concurrency=options.limit_concurrency,
                h11_max_incomplete_event_size=options.max_header_bytes, server_header=False, proxy_headers=False)
