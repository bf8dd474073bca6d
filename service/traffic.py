"""Kiln's versions of BentoML 1.4's timeout and concurrency middleware, installed by
service/bento.py.

BentoML's ``TimeoutMiddleware`` (bentoml/_internal/server/http/traffic.py) schedules a timer
per request with ``loop.call_later`` and never cancels it. The timer holds the request's
context (its tracing span, the request itself) until it fires, ``traffic.timeout`` seconds
later, so at a few hundred requests per second a worker keeps tens of thousands of finished
requests alive: measured here, worker RSS grew from 160 MB to 376 MB, full garbage
collections took 39% of the worker's time with pauses up to 0.5 s, and throughput fell
(bench/RESULTS.md). This class behaves the same (504 when no response has started within the
timeout) and cancels its timer as soon as the request no longer needs it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.health import HEALTH_PATHS

__all__ = ["CancellingTimeoutMiddleware", "ConcurrencyLimitMiddleware", "install"]

Scope = dict[str, Any]


class CancellingTimeoutMiddleware:
    """BentoML's TimeoutMiddleware, whose timer is cancelled once the response starts."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def send_started(message: Any) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # the response has begun: no timeout from here on
            await send(message)

        # The app runs in the request's own task (no task per request, unlike BentoML's); the
        # deadline's timer is cancelled when the block exits, so nothing outlives the request.
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, send_started)
        except TimeoutError:
            if started or not deadline.expired():  # the app's own TimeoutError: not ours
                raise
            from starlette.responses import JSONResponse

            response = JSONResponse(
                {"error": f"Not able to process the request in {self.timeout} seconds"},
                status_code=504,
            )
            await response(scope, receive, send)


class ConcurrencyLimitMiddleware:
    """BentoML's ``MaxConcurrencyMiddleware`` (``traffic.max_concurrency``, set by
    ``KILN_SERVE_MAX_CONCURRENCY``), answering as Kiln's other overload does.

    BentoML's answers ``429 {"error": "Too many requests"}`` with no ``Retry-After``; a
    request past the limit here gets ``503`` with ``Retry-After: 1`` and a JSON error, like a
    request refused by a full batching queue, so a client (or a load balancer) treats both
    the same way: the server is busy, try again shortly. Health and metrics routes
    (``HEALTH_PATHS``, service/health.py) are never limited, so probes keep answering under
    overload.
    """

    def __init__(self, app: Any, max_concurrency: int, skip_paths: list[str] | None = None):
        self.app = app
        self.limit = max_concurrency
        self.active = 0
        self.skip_paths = frozenset({*(skip_paths or []), *HEALTH_PATHS})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            body = (
                b'{"error":"the server is at its limit of '
                + str(self.limit).encode()
                + b' concurrent requests; retry shortly"}'
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def install() -> None:
    """Make BentoML build its apps with Kiln's middleware (call before serving)."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc,assignment]
    traffic.MaxConcurrencyMiddleware = ConcurrencyLimitMiddleware  # type: ignore[misc,assignment]
