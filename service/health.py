"""``GET /readyz`` that says which models are ready and which failed, as JSON.

BentoML's own ``/readyz`` answers ``200`` or a plain-text ``503`` from the service's
``__is_ready__``. This middleware answers the same path first, with the same status (200 only
when every model is loaded and warm) and a body that names each model's state, so an operator
(or ``kubectl describe``) sees at once that, say, ``churn`` failed its integrity check while
``wine`` serves:

    {"ready": false, "models": {"wine": "ready"}, "failed": {"churn": "model churn:...: ..."}}

A problem of the worker itself is named under ``problems``, e.g. a metrics directory that is
(nearly) full (service/instruments.py): ``{"ready": false, ..., "problems": {"metrics":
"metrics directory ... has 3.2 MiB free, ..."}}``.

A model that fails to load keeps the whole pod out of a Kubernetes Service (a new image with a
damaged model never takes traffic, and the rollout stops); the models that did load still
answer requests sent to the pod directly.

``HEALTH_PATHS`` are the routes that probes and Prometheus call: they are never limited by
``KILN_SERVE_MAX_CONCURRENCY`` (service/traffic.py) and need no API key unless
``KILN_SERVE_PROTECT_HEALTH`` says so (service/access.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HEALTH_PATHS", "READY_PATH", "ReadinessMiddleware", "readiness"]

READY_PATH = "/readyz"
# BentoML's probes and metrics, and the Open Inference Protocol's health routes (service/app.py).
HEALTH_PATHS = frozenset(
    {"/livez", "/healthz", READY_PATH, "/metrics", "/v2/health/live", "/v2/health/ready"}
)


def readiness(plane: Any) -> tuple[int, dict[str, Any]]:
    """(status, body) of ``/readyz`` for a data plane (None: still starting)."""
    if plane is None:
        return 503, {"ready": False, "models": {}, "failed": {}, "starting": True}
    body = {
        "ready": plane.ready,
        "models": dict.fromkeys(sorted(plane.models), "ready"),
        "failed": dict(sorted(plane.failed.items())),
    }
    # What else keeps the worker out of service (service/models.py ModelSet.problems), e.g.
    # a full metrics directory: named only when there is something to name.
    problems = plane.problems
    if problems:
        body["problems"] = dict(sorted(problems.items()))
    return (200 if plane.ready else 503), body


class ReadinessMiddleware:
    """ASGI middleware: answers ``GET``/``HEAD /readyz`` from ``plane()``; the rest passes."""

    def __init__(self, app: ASGIApp, plane: Callable[[], Any]) -> None:
        self.app = app
        self.plane = plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != READY_PATH
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        status, body = readiness(self.plane())
        raw = orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else raw}
        )
