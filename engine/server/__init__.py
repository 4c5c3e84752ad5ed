"""The HTTP edge: a FastAPI app over the `Engine` facade (`create_app`), served by uvicorn
(`rulebridge serve`). Imported only by `rulebridge serve` and by those who build the app: the
engine and the CLI's other commands never import FastAPI."""

from __future__ import annotations

from engine.server.app import create_app

__all__ = ["create_app"]
