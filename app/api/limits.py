"""Request body limit enforced on the bytes actually received, not on what Content-Length claims.

A client can omit Content-Length (chunked upload) or lie about it; counting the streamed body is the only
way to be sure a request cannot fill the box's memory or disk.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTooLarge(HTTPException):
    """Raised from inside `receive` so FastAPI's body parsing passes it through as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, detail=f"request body larger than the limit of {limit} bytes (api.max_request_bytes)"
        )


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: rejects on Content-Length up front, and on the running byte count after."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await self._reject(send, 400, "invalid Content-Length header")
                return
            if too_large:
                await self._reject(send, 413, RequestTooLarge(self.max_bytes).detail)
                return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestTooLarge as exc:
            # Reached only where nothing inside turned the exception into a response already.
            if not response_started:
                await self._reject(send, 413, exc.detail)

    @staticmethod
    async def _reject(send: Send, status: int, reason: str) -> None:
        body = json.dumps({"detail": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
