"""The inference routes without FastAPI's per-request routing machinery.

A request to ``POST /v1/models/{name}/predict`` or ``POST /v2/models/{name}[/versions/{v}]
/infer`` does little besides decoding, batching and encoding, so the framework's share of it
is large: the profile in bench/RESULTS.md showed FastAPI and Starlette's routing, dependency
solving and exception middleware at about a sixth of a worker's time. ``FastLane`` is an ASGI
middleware on Kiln's FastAPI app that matches those two routes itself and calls the very
endpoint functions FastAPI declared (same code, same OpenAPI documentation), turning errors
into responses with the app's own exception handlers. Every other request goes on through
FastAPI unchanged. ``routes_first`` puts the same routes first in the app's route list, where
BentoML's mount looks for a match before every request.

Under BentoML the same middleware is also installed one level out, as a service middleware
(``FastLane(app, fastapi=http_app)``, see service/bento.py): there it sits inside BentoML's
request metrics, tracing and timeout middleware, which still see every request, and in front
of BentoML's request context, the outer app's exception middleware, its route scan and the
mount, which the inference routes do not use (the profile in bench/RESULTS.md put those at
about a tenth of a worker's time).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FAST_ROUTES", "FastLane", "routes_first"]

# The routes taken here: FastAPI path -> the pattern matched against the request's path.
FAST_ROUTES = {
    "/v1/models/{name}/predict": re.compile(r"/v1/models/(?P<name>[^/]+)/predict"),
    "/v1/noop": re.compile(r"/v1/noop"),  # the ceiling of the same path, for benchmarks
    "/v2/models/{name}/infer": re.compile(r"/v2/models/(?P<name>[^/]+)/infer"),
    "/v2/models/{name}/versions/{version}/infer": re.compile(
        r"/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/infer"
    ),
}
Endpoint = Callable[..., Awaitable[Response]]


class FastLane:
    """ASGI middleware: ``FAST_ROUTES`` straight to their endpoints, the rest to ``app``.

    ``fastapi`` is the app that declares the routes; by default the app the request is for
    (``scope["app"]``), which is right when this middleware is the app's own.
    """

    def __init__(self, app: ASGIApp, fastapi: FastAPI | None = None) -> None:
        self.app = app
        self.fastapi = fastapi
        self._routes: list[tuple[re.Pattern[str], Endpoint]] | None = None

    def _resolve(self, fastapi: FastAPI) -> list[tuple[re.Pattern[str], Endpoint]]:
        found = {
            route.path: route.endpoint
            for route in fastapi.routes
            if isinstance(route, APIRoute) and "POST" in (route.methods or ())
        }
        missing = sorted(set(FAST_ROUTES) - set(found))
        if missing:
            raise RuntimeError(f"FastLane: the app declares no POST route {missing}")
        return [(pattern, found[path]) for path, pattern in FAST_ROUTES.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        fastapi: FastAPI = self.fastapi or scope["app"]
        if self._routes is None:
            self._routes = self._resolve(fastapi)
        path = get_route_path(scope)
        for pattern, endpoint in self._routes:
            match = pattern.fullmatch(path)
            if match is not None:
                params = match.groupdict()
                scope["app"] = fastapi  # what the endpoint reads its state from
                scope["path_params"] = params
                request = Request(scope, receive, send)
                response = await self._call(fastapi, endpoint, request, params)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _call(
        fastapi: FastAPI, endpoint: Endpoint, request: Request, params: dict[str, Any]
    ) -> Response:
        """The endpoint's response, or the app's handler's answer to what it raised."""
        try:
            return await endpoint(request=request, **params)
        except Exception as exc:
            # The handler of the nearest class, as Starlette's own lookup walks the MRO:
            # KilnError, ClientDisconnect and HTTPException each have theirs, then Exception.
            handlers = fastapi.exception_handlers
            for kind in type(exc).__mro__:
                if kind in handlers:
                    answer = handlers[kind](request, exc)
                    response = await answer if inspect.isawaitable(answer) else answer
                    assert isinstance(response, Response)
                    return response
            raise


def routes_first(app: FastAPI) -> None:
    """Move ``FAST_ROUTES`` to the front of the app's routes. BentoML's mount of the app looks
    for the route a request matches, in order, before the app sees the request: its hottest
    routes should come first. (No two of the app's routes match the same request, so the
    order changes nothing else.)"""
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) not in FAST_ROUTES)
