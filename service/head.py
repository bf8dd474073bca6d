"""``HEAD`` on every ``GET`` route, answered as ``GET`` without the body (RFC 9110, 9.3.2).

FastAPI's routes take only the methods they declare, so ``HEAD /v1/models`` was answered 405
though ``GET`` works (Starlette's own routes, BentoML's ``/livez``, add ``HEAD`` themselves).
This ASGI middleware on Kiln's app hands the app a ``GET`` in place of a ``HEAD`` and sends
the answer's status and headers (``Content-Length`` included) without its body. The scope is
copied, not changed: the server, which still sees ``HEAD``, drops any body as well. A route
that takes no ``GET`` answers 405 with its ``Allow`` header, as for any other method, and
:func:`allow_head` adds ``HEAD`` to the ``Allow`` of a route that takes ``GET``.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadAsGet", "allow_head"]


def allow_head(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """A 405's headers with ``HEAD`` in ``Allow`` wherever ``GET`` is (the router's ``Allow``
    names only the methods a route declares)."""
    allow = (headers or {}).get("Allow")
    if allow is None:
        return None if headers is None else dict(headers)
    methods = [m.strip() for m in allow.split(",")]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return {**(headers or {}), "Allow": ", ".join(methods)}


class HeadAsGet:
    """ASGI middleware: ``HEAD`` requests reach the app as ``GET``; bodies are not sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the body's later parts are not sent; the last one ends it
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
