"""ASGI middleware that caps request bodies by counting bytes (FastAPI has no built-in cap).

A declared ``Content-Length`` over the limit is answered 413 before anything is read. A body
that streams past the limit (chunked, or lying about its length) is cut off at the limit and
answered 413, whatever the route was doing with it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import PROBLEM_JSON, problem_type


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, scope: Scope, send: Send) -> None:
        body = json.dumps(
            {
                "type": problem_type("payload-too-large"),
                "title": "Request body too large",
                "status": 413,
                "detail": f"the request body is larger than the limit of {self.max_bytes} bytes",
                "instance": scope.get("path", ""),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(scope, send)
                    return
        state: dict[str, Any] = {"seen": 0, "exceeded": False, "started": False}

        async def limited_receive() -> Message:
            if state["exceeded"]:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["exceeded"] = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                return  # the app's own answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if state["exceeded"] and not state["started"]:
            await self._reject(scope, send)
