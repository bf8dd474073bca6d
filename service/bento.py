"""The BentoML service: it opens the data plane at start-up and mounts the HTTP routes.

Run with ``bentoml serve`` from the repository root (bentofile.yaml points here) or
``make serve``. BentoML adds ``/livez``, ``/readyz`` (200 once every model is warm) and
``/metrics`` (its request metrics and Kiln's ``kiln_*`` families). Each worker also serves
the Open Inference Protocol over gRPC on ``KILN_SERVE_GRPC_PORT`` (service/grpc/; 0: off).

``bentoml serve`` imports this module twice: in its supervisor (the circus arbiter, which
reads the service's configuration, holds the socket and starts the workers) and in each
worker. Only a worker serves HTTP, so the supervisor reads the settings and declares the
service but builds no HTTP app: FastAPI, the routes, numpy and the data plane's modules are
imported by the workers alone (measured: 0.5-1 s of start-up and about 30 MB of the
supervisor's memory, issue 18).
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import TYPE_CHECKING, Any

import bentoml

from kiln.errors import SettingsError
from service import tracing
from service.settings import load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.dataplane import DataPlane

__all__ = ["Kiln"]

# BentoML reads its service configuration when this class is decorated, at import, so the
# settings are read here, once, and the same object serves ``__init__``: this entry module is
# the one place where reading them at import is unavoidable. A bad or unknown KILN_SERVE_*
# variable stops start-up with its one-line message and exit code 2 (raised, it would reach
# the user as BentoML's traceback of the failed import).
try:
    settings = load_settings()
except SettingsError as exc:
    print(exc, file=sys.stderr)
    raise SystemExit(exc.exit_code) from None

# The access log and the inference routes' OpenTelemetry spans are off unless asked for:
# together they cost 40% of the throughput (bench/RESULTS.md), and Prometheus metrics count
# every request.
_tracing = {} if settings.trace_inference else {"excluded_urls": list(tracing.UNTRACED)}
_traffic: dict[str, float | int] = {"timeout": settings.timeout}
if settings.max_concurrency is not None:  # past it: 503 + Retry-After (traffic.py)
    _traffic["max_concurrency"] = settings.max_concurrency


def _in_supervisor() -> bool:
    """Whether this module is being imported by ``bentoml serve``'s supervisor.

    BentoML offers no flag for it; its CLI imports the service inside the click command
    ``serve`` (bentoml_cli/serve.py), while a worker imports it inside its own command
    (``_bentoml_impl.worker.service``), and ``bentoml build``, tests and an in-process import
    outside any ``serve``: all of those build the app as before.
    """
    import click

    context = click.get_current_context(silent=True)
    return (
        context is not None
        and context.command.name == "serve"
        and getattr(context.command.callback, "__module__", "") == "bentoml_cli.serve"
    )


def _http_app() -> FastAPI:
    """Set up this worker's HTTP server and build its app (imports the serving modules)."""
    import uvicorn.config as uvicorn_config

    from service import httpserver, instruments, traffic
    from service.app import create_app

    # The worker's event loop. uvloop is faster on bulk JSON (bench/RESULTS.md), but its
    # libuv accepts one new connection per loop iteration (libuv PR #3696): under a flood of
    # busy connections, new ones, health probes included, waited up to 8 s in the accept
    # queue (tests/e2e/test_overload.py). asyncio's loop accepts up to a hundred at a time.
    uvicorn_config.LOOP_FACTORIES["auto"] = uvicorn_config.LOOP_FACTORIES[settings.event_loop]
    # The workers' HTTP protocol: limits on header size, header count, header-read time,
    # idle time and connections, none of which uvicorn enforces for httptools
    # (service/httpserver.py).
    httpserver.install(settings)
    # BentoML builds its HTTP app (and its timeout middleware) after importing this module:
    # put the fixed middleware in place first (service/traffic.py says why).
    traffic.install()
    if not settings.trace_inference:  # the untraced routes skip the tracing middleware's work
        tracing.install()
    app = create_app()
    # BentoML's request metrics labelled by route, and its metrics directory watched
    # (service/instruments.py): whatever path a client sends, the series stay a bounded set.
    instruments.install(settings, plane=lambda: getattr(app.state, "dataplane", None))
    return app


@bentoml.service(
    name="kiln",
    workers=settings.workers,
    traffic=_traffic,
    logging={"access": {"enabled": settings.access_log}},
    tracing=_tracing,
)
class Kiln:
    """Serves every production model in the store through both protocols."""

    def __init__(self) -> None:
        from service.access import KeyRing
        from service.dataplane import DataPlane
        from service.metrics import Metrics

        http_app.state.keyring = KeyRing.from_settings(settings)
        # Kiln's own lines (models loaded, hot swaps) are INFO; BentoML's logging set-up
        # leaves unconfigured loggers at WARNING, which would hide them from the operator.
        if logging.getLogger("kiln").level == logging.NOTSET:
            logging.getLogger("kiln").setLevel(logging.INFO)
        self.plane: DataPlane = DataPlane.load(settings, Metrics())
        http_app.state.dataplane = self.plane
        self.grpc: Any = None  # service.grpc.server.GrpcFront, once started
        # Start-up objects live for the whole process: keep the collector off them, which
        # shortens the pauses that otherwise grow with every request BentoML keeps alive.
        # Only the young generations are collected first: a full collection here took 60-90
        # ms of the start to /readyz and found 57 unreachable objects of 140,000 (issue 18),
        # too few to matter frozen.
        gc.collect(1)
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.plane.ready

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        """The gRPC front, on this worker's running loop (grpcio imported only when on)."""
        if settings.grpc_port:
            from service.grpc.server import start

            self.grpc = await start(settings, lambda: self.plane, http_app.state.keyring)

    @bentoml.on_shutdown
    async def close(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(settings.grpc_grace_seconds)
        await self.plane.close()


def _mount(service: Any, app: FastAPI) -> None:
    """Mount ``app`` on the service (as ``@bentoml.asgi_app`` does) and its middleware."""
    from service.access import ApiKeyMiddleware
    from service.errorbodies import JsonErrors
    from service.fastlane import FastLane
    from service.health import ReadinessMiddleware

    bentoml.asgi_app(app, path="/")(service)
    # API keys, when configured, guard every route but health and metrics (service/access.py).
    service.add_asgi_middleware(ApiKeyMiddleware, keys=lambda: getattr(app.state, "keyring", None))
    # /readyz names the models that are ready and those that failed to load
    # (service/health.py).
    service.add_asgi_middleware(
        ReadinessMiddleware, plane=lambda: getattr(app.state, "dataplane", None)
    )
    # The inference routes skip BentoML's request context, route scan and mount (see
    # service/fastlane.py); BentoML's metrics, tracing and timeout middleware still wrap them.
    service.add_asgi_middleware(FastLane, fastapi=app)
    # Behind the fast lane: any plain-text error (BentoML's own 404 and 405) becomes JSON.
    service.add_asgi_middleware(JsonErrors)


# The supervisor only reads the service's configuration (module docstring): everywhere else
# the app is built and mounted at import, before BentoML builds its own HTTP app around it.
if not _in_supervisor():
    http_app = _http_app()
    _mount(Kiln, http_app)
