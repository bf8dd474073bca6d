"""Every error answer as JSON, including the ones BentoML's own app writes as plain text.

Kiln's routes answer errors as ``{"error": message}``, but a request that matches no route
at all is answered by BentoML's outer Starlette app, in plain text (``404 Not Found`` for a
path its mount does not match, such as one with a newline in it; ``405`` for a wrong
method). This ASGI middleware, installed as a BentoML service middleware behind the fast
lane (so the inference routes never pass through it), rewrites any 4xx or 5xx answer whose
content type is not JSON into ``{"error": <its text>}`` with the same status and headers
(a 405 keeps its ``Allow``). Successful answers and JSON errors pass through untouched,
unbuffered.

One redirect is an error too: for a path that matches no route but would without its trailing
slash (or with one), Starlette's router answers 307 with a ``Location`` built from the
client's own ``Host`` header, a redirect anyone can point anywhere. Kiln's routes never
redirect, so such an answer becomes 404 ``{"error": ...}`` naming the path without the slash.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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
        held: Message | None = None  # a response start held back: its answer becomes JSON
        text = bytearray()
        replaced: str | None = None  # the message, when not the held answer's own text

        async def rewrite(message: Message) -> None:
            nonlocal held, replaced
            if message["type"] == "http.response.start":
                if _slash_redirect(scope, message):
                    held = {**message, "status": 404, "headers": []}
                    replaced = _slash_message(scope)
                    return
                if message["status"] >= 400 and not _is_json(message.get("headers", [])):
                    held = message
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            text.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            own = bytes(text) if replaced is None else replaced.encode()
            await _send_json(send, held, own, scope["method"] == "HEAD")

        await self.app(scope, receive, rewrite)


def _slash_redirect(scope: Scope, start: Message) -> bool:
    """Whether ``start`` is the router's redirect of this path to itself with or without a
    trailing slash."""
    if start["status"] not in (307, 308):
        return False
    path: str = scope.get("path", "")
    other = path[:-1] if path.endswith("/") else path + "/"
    for name, value in start.get("headers", []):
        if name.lower() == b"location":
            return bool(other) and urlsplit(value.decode("latin-1")).path == other
    return False


def _slash_message(scope: Scope) -> str:
    path: str = scope.get("path", "")
    hint = f" (did you mean {path.rstrip('/')!r}?)" if path.endswith("/") else ""
    return f"no route {path[:200]!r}{hint}"


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
