"""Request bodies are bounded in size and in time, before any handler sees them (pure ASGI).

A body larger than `max_body_bytes` is refused with 413 (`request_too_large`) as soon as its
declared length or the bytes received pass the limit; one that takes longer than `body_timeout`
seconds to arrive is refused with 408 (`request_timeout`). The body is read here, on the event
loop, so a slow or abandoned client never holds one of the threads the engine decides in.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from engine.server.problems import PROBLEM_JSON, problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 30.0


async def send_problem(send: Send, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": body["status"],
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Reads the whole request body within the limits, then hands it to the app."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT_S):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    def _too_large(self, scope: Scope) -> dict[str, Any]:
        return problem("request_too_large", 413, f"the request body is larger than {self.max_body_bytes} bytes",
                       instance=scope.get("path"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await send_problem(send, self._too_large(scope), [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except TimeoutError:
                await send_problem(send, problem("request_timeout", 408, "the request body did not arrive within "
                                                 f"{self.body_timeout:g} s", instance=scope.get("path")),
                                   [(b"connection", b"close")])
                return
            if message["type"] == "http.disconnect":
                return  # the client left: nothing to answer, nothing to run
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                await send_problem(send, self._too_large(scope), [(b"connection", b"close")])
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)
