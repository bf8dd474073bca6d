"""The BentoML service: it opens the data plane at start-up and mounts the HTTP routes.

Run with ``bentoml serve`` from the repository root (bentofile.yaml points here) or
``make serve``. BentoML adds ``/livez``, ``/readyz`` (200 once every model is warm) and
``/metrics`` (its request metrics and Kiln's ``kiln_*`` families). Each worker also serves
the Open Inference Protocol over gRPC on ``KILN_SERVE_GRPC_PORT`` (service/grpc/; 0: off).
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import bentoml
import uvicorn.config as uvicorn_config

from kiln.errors import SettingsError
from service import httpserver, instruments, traffic
from service.access import ApiKeyMiddleware, KeyRing
from service.app import create_app
from service.dataplane import DataPlane
from service.errorbodies import JsonErrors
from service.fastlane import FastLane
from service.health import ReadinessMiddleware
from service.metrics import Metrics
from service.settings import load_settings

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
_tracing = (
    {} if settings.trace_inference else {"excluded_urls": ["/v1/models", "/v2/models", "/v1/noop"]}
)
_traffic: dict[str, float | int] = {"timeout": settings.timeout}
if settings.max_concurrency is not None:  # past it: 503 + Retry-After (traffic.py)
    _traffic["max_concurrency"] = settings.max_concurrency
# The worker's event loop. uvloop is faster on bulk JSON (bench/RESULTS.md), but its libuv
# accepts one new connection per loop iteration (libuv PR #3696): under a flood of busy
# connections, new ones, health probes included, waited up to 8 s in the accept queue
# (tests/e2e/test_overload.py). asyncio's loop accepts up to a hundred at a time.
uvicorn_config.LOOP_FACTORIES["auto"] = uvicorn_config.LOOP_FACTORIES[settings.event_loop]
# The workers' HTTP protocol: limits on header size, header count, header-read time, idle
# time and connections, none of which uvicorn enforces for httptools (service/httpserver.py).
httpserver.install(settings)

# BentoML builds its HTTP app (and its timeout middleware) after importing this module: put
# the fixed middleware in place first (service/traffic.py says why).
traffic.install()
http_app = create_app()
# BentoML's request metrics labelled by route, and its metrics directory watched
# (service/instruments.py): whatever path a client sends, the series stay a bounded set.
instruments.install(settings, plane=lambda: getattr(http_app.state, "dataplane", None))


@bentoml.service(
    name="kiln",
    workers=settings.workers,
    traffic=_traffic,
    logging={"access": {"enabled": settings.access_log}},
    tracing=_tracing,
)
@bentoml.asgi_app(http_app, path="/")
class Kiln:
    """Serves every production model in the store through both protocols."""

    def __init__(self) -> None:
        http_app.state.keyring = KeyRing.from_settings(settings)
        # Kiln's own lines (models loaded, hot swaps) are INFO; BentoML's logging set-up
        # leaves unconfigured loggers at WARNING, which would hide them from the operator.
        if logging.getLogger("kiln").level == logging.NOTSET:
            logging.getLogger("kiln").setLevel(logging.INFO)
        self.plane = DataPlane.load(settings, Metrics())
        http_app.state.dataplane = self.plane
        self.grpc: Any = None  # service.grpc.server.GrpcFront, once started
        # Start-up objects live for the whole process: keep the collector off them, which
        # shortens the pauses that otherwise grow with every request BentoML keeps alive.
        gc.collect()
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


# API keys, when configured, guard every route but health and metrics (service/access.py).
Kiln.add_asgi_middleware(  # type: ignore[attr-defined]
    ApiKeyMiddleware, keys=lambda: getattr(http_app.state, "keyring", None)
)
# /readyz names the models that are ready and those that failed to load (service/health.py).
Kiln.add_asgi_middleware(  # type: ignore[attr-defined]
    ReadinessMiddleware, plane=lambda: getattr(http_app.state, "dataplane", None)
)
# The inference routes skip BentoML's request context, route scan and mount (see
# service/fastlane.py); BentoML's metrics, tracing and timeout middleware still wrap them.
# (The decorators made ``Kiln`` a ``bentoml.Service``; mypy still sees the class.)
Kiln.add_asgi_middleware(FastLane, fastapi=http_app)  # type: ignore[attr-defined]
# Behind the fast lane: any plain-text error (BentoML's own 404 and 405) becomes JSON.
Kiln.add_asgi_middleware(JsonErrors)  # type: ignore[attr-defined]
