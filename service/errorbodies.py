"""Every error answer as JSON, including the ones BentoML's own app writes as plain text.

Kiln's routes answer errors as ``{"error": message}``, but a request that matches no route
at all is answered by BentoML's outer Starlette app, in plain text (``404 Not Found`` for a
path its mount does not match, such as one with a newline in it; ``405`` for a wrong
method). This ASGI middleware, installed as a BentoML service middleware behind the fast
lane (so the inference routes never pass through it), rewrites any 4xx or 5xx answer whose
content type is not JSON into ``{"error": <its text>}`` with the same status and headers.
Successful answers and JSON errors pass through untouched, unbuffered.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["JsonErrors"]

_LIMIT = 4096  # characters of a plain-text error kept in the message


class JsonErrors:
    """ASGI middleware: non-JSON error answers become ``{"error": ...}``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and not _is_json(message.get("headers", [])):
                    start = message  # hold it: the body becomes JSON
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _send_json(send, start, bytes(body), scope["method"] == "HEAD")

        await self.app(scope, receive, rewrite)


def _is_json(headers: Any) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


async def _send_json(send: Send, start: Message, text: bytes, head: bool) -> None:
    message = text.decode("utf-8", "replace").strip()[:_LIMIT] or "error"
    raw = orjson.dumps({"error": message})
    headers = [
        (name, value)
        for name, value in start.get("headers", [])
        if name.lower() not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else raw})
