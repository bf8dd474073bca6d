"""The inference routes past BentoML's OpenTelemetry middleware, unless they are traced.

BentoML wraps every request in OpenTelemetry's ASGI middleware, and Kiln excludes the
inference routes from tracing by default (``KILN_SERVE_TRACE_INFERENCE``; service/bento.py).
The middleware decides that per request by building the request's full URL, which runs
``urllib.parse.urlparse`` to strip credentials, and then matching the excluded patterns: about
10 us of a one-row request (the profile in bench/RESULTS.md), for a request it then passes
on untouched. The middleware :func:`install` puts in its place looks at the path first: a
path under one of the untraced prefixes goes straight to the app, as the middleware would send
it after its own check (the prefixes are among its excluded patterns, which match anywhere in
the URL); every other request takes the middleware's own path, unchanged.
"""

from __future__ import annotations

__all__ = ["UNTRACED", "install"]

UNTRACED = ("/v1/models", "/v2/models", "/v1/noop")
"""Path prefixes of the routes not traced unless asked for: BentoML's ``excluded_urls``."""


def install() -> None:
    """Make BentoML build its tracing middleware with the untraced prefixes checked first
    (call in a worker before serving, and only when the inference routes are not traced).
    OpenTelemetry's instrumentation is imported here, not at import: the supervisor, which
    reads ``UNTRACED``, never serves."""
    from opentelemetry.instrumentation import asgi
    from starlette.types import Receive, Scope, Send

    class UntracedFirst(asgi.OpenTelemetryMiddleware):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith(UNTRACED):
                await self.app(scope, receive, send)
                return
            await super().__call__(scope, receive, send)

    if asgi.OpenTelemetryMiddleware.__name__ != UntracedFirst.__name__:  # once
        asgi.OpenTelemetryMiddleware = UntracedFirst  # type: ignore[misc]
