"""The ASGI app: `create_app(engine or workspace)`, a FastAPI app over the `Engine` facade.

Handlers are thin (`engine.server.routes`): parse the request, call the facade, render its JSON.
Nothing here decides, verifies or executes: the facade runs the same authenticate → decide →
verify → (review) → execute → audit path as the CLI, with the same identities, stable codes and
audit events. What this module adds is HTTP: errors as problem+json (`engine.server.problems`),
bounded request bodies (`engine.server.limits`), metrics (`engine.server.metrics`), and an
OpenAPI document that carries each action's JSON Schema from the action catalog.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import RulebridgeError, shown
from engine.server.limits import BODY_TIMEOUT_S, MAX_BODY_BYTES, BodyLimit, Message, Receive, Scope, Send
from engine.server.metrics import Metrics
from engine.server.problems import PROBLEM_JSON, problem, problem_of

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.server.idempotency import IdempotencyStore

API_VERSION = "1"


@dataclass
class Served:
    """What the handlers share: the engine, whether keys are required, the metrics, the keys of
    idempotent requests (opened on first use)."""

    engine: Engine
    require_keys: bool
    metrics: Metrics
    _idempotency: IdempotencyStore | None = None

    @property
    def idempotency(self) -> IdempotencyStore:
        if self._idempotency is None:
            from engine.server.idempotency import IdempotencyStore

            self._idempotency = IdempotencyStore(self.engine.database)
        return self._idempotency


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _validation_problem(exc: RequestValidationError, instance: str) -> dict[str, Any]:
    errors = [{"field": _field(e.get("loc", ())), "message": shown(str(e.get("msg", "")), 200),
               "type": str(e.get("type", ""))} for e in list(exc.errors())[:20]]
    detail = "; ".join(f"`{e['field']}`: {e['message']}" for e in errors[:5]) or "the request is malformed"
    return problem("request_invalid", 422, detail, instance=instance, errors=errors)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RulebridgeError)
    async def engine_error(request: Request, exc: RulebridgeError) -> JSONResponse:
        return problem_response(problem_of(exc, instance=request.url.path))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_problem(exc, request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "request_invalid")
        return problem_response(problem(code, exc.status_code, str(exc.detail), instance=request.url.path),
                                headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem_of(exc, instance=request.url.path))


class _Measured:
    """Counts every request and its latency by route template (pure ASGI, streaming-safe)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)


def _openapi(app: FastAPI, engine: Engine) -> dict[str, Any]:
    """The OpenAPI document: errors as problem+json, and each action's parameter schema (from the
    catalog's pydantic models, the ones the gate validates with) under `components.schemas`."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in doc.get("paths", {}).values():
        for op in path.values():
            for status, resp in op.get("responses", {}).items():
                schemas = [c.get("schema", {}) for c in resp.get("content", {}).values()]
                if status[:1] in ("4", "5") and schemas and schemas[0].get("$ref", "").endswith("/ProblemV1"):
                    resp["content"] = {PROBLEM_JSON: {"schema": schemas[0]}}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    catalog = engine.ws.actions
    for name in sorted(catalog.actions):
        schemas[f"ActionParams.{name}"] = catalog.json_schema(name)
    app.openapi_schema = doc
    return doc


class RulebridgeAPI(FastAPI):
    """FastAPI with the OpenAPI document of `_openapi`."""

    def openapi(self) -> dict[str, Any]:
        return _openapi(self, self.state.served.engine)


def create_app(engine_or_workspace: Engine | str | Path, *, require_keys: bool | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT_S,
               close_engine: bool | None = None) -> Any:
    """The ASGI app over an engine (or the workspace to open one from).

    `require_keys`: every request must carry a key (`Authorization: Bearer rbk_...`); None keeps
    the workspace's `[security] require_keys`. The engine is closed at shutdown when this opened it
    (or `close_engine`)."""
    from engine.api import Engine
    from engine.server.routes import install_routes

    opened = not isinstance(engine_or_workspace, Engine)
    engine = Engine.open(engine_or_workspace) if not isinstance(engine_or_workspace, Engine) else engine_or_workspace
    if require_keys is not None:
        engine.require_keys = require_keys  # the facade refuses a keyless decision or review (auth_required)
    served = Served(engine, engine.require_keys, Metrics(engine))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn ends the lifespan after in-flight requests finished (or the graceful timeout)
        if close_engine if close_engine is not None else opened:
            engine.close()

    app = RulebridgeAPI(title="rulebridge", version=API_VERSION, lifespan=lifespan,
                  description="A governed decision engine: rules over a knowledge graph decide, every decision is "
                              "verified, may go to a person, executes exactly once and is audited. Errors are "
                              "`application/problem+json` (RFC 9457) with the engine's stable `code`.")
    app.state.served = served
    _install_errors(app)
    install_routes(app)
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes, body_timeout=body_timeout)
    app.add_middleware(_Measured, metrics=served.metrics)
    return app
