"""grpc.health.v1 ``Health`` by the readiness rules of ``/readyz`` (service/health.py).

The service names a client may ask about: ``""`` (the whole server) and
``inference.GRPCInferenceService`` are SERVING when ``/readyz`` would answer 200 (every model
loaded and warm, no problem of the worker); a model's name is SERVING when that model is
loaded and the worker has no problem, NOT_SERVING when it failed to load; any other name is
NOT_FOUND, as the standard servicer answers. ``Check`` looks at the data plane on every call;
``Watch`` streams a change within :data:`REFRESH_SECONDS`. From the start of a graceful
shutdown every service is NOT_SERVING, so a load balancer stops sending calls first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from service.health import readiness

__all__ = ["REFRESH_SECONDS", "SERVICE_NAME", "Readiness"]

SERVICE_NAME = "inference.GRPCInferenceService"
REFRESH_SECONDS = 1.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness(health_aio.HealthServicer):
    """The standard asyncio health servicer, its statuses read from ``plane()``."""

    def __init__(self, plane: Callable[[], Any]) -> None:
        super().__init__()
        self._plane = plane
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def statuses(self) -> dict[str, int]:
        """Every service name this server knows, and its status now (a ServingStatus)."""
        code, body = readiness(self._plane())
        overall = SERVING if code == 200 and not self._stopping else NOT_SERVING
        whole = not body.get("problems") and not self._stopping
        found = {"": overall, SERVICE_NAME: overall}
        found.update(dict.fromkeys(body["failed"], NOT_SERVING))
        found.update(dict.fromkeys(body["models"], SERVING if whole else NOT_SERVING))
        return found

    async def Check(  # noqa: N802 (the RPC's name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.statuses().get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def refresh(self) -> None:
        """Bring the statuses ``Watch`` streams up to date."""
        for service, status in self.statuses().items():
            if self._server_status.get(service) != status:
                await self.set(service, status)

    def start(self) -> None:
        """Refresh every :data:`REFRESH_SECONDS` (on the running loop) until :meth:`stop`."""

        async def loop() -> None:
            while True:
                await self.refresh()
                await asyncio.sleep(REFRESH_SECONDS)

        self._task = asyncio.create_task(loop(), name="kiln-grpc-health")

    async def stop(self) -> None:
        """Every service NOT_SERVING from now on (graceful shutdown), the refresher gone."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.enter_graceful_shutdown()
