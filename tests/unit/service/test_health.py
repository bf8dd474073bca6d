"""/readyz: 200 only when every model is ready; the body names the ready and the failed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.health import ReadinessMiddleware, readiness


def _plane(models: list[str], failed: dict[str, str]) -> Any:
    return SimpleNamespace(
        models=dict.fromkeys(models),
        failed=failed,
        problems={},
        ready=bool(models) and not failed,
    )


def test_readiness_names_the_failed_models() -> None:
    assert readiness(_plane(["wine", "churn"], {})) == (
        200,
        {"ready": True, "models": {"churn": "ready", "wine": "ready"}, "failed": {}},
    )
    status, body = readiness(_plane(["wine"], {"churn": "model.onnx does not match"}))
    assert status == 503 and body["failed"] == {"churn": "model.onnx does not match"}
    assert body["models"] == {"wine": "ready"} and body["ready"] is False
    assert readiness(None)[0] == 503 and readiness(None)[1]["starting"] is True


def test_the_middleware_answers_readyz_and_passes_the_rest() -> None:
    async def other(_: object) -> PlainTextResponse:
        return PlainTextResponse("other")

    plane = _plane(["wine"], {"churn": "missing"})
    app = Starlette(routes=[Route("/readyz", other), Route("/livez", other)])
    app.add_middleware(ReadinessMiddleware, plane=lambda: plane)
    client = TestClient(app)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["failed"] == {"churn": "missing"}
    assert response.headers["content-type"] == "application/json"
    assert client.head("/readyz").status_code == 503
    assert client.get("/livez").text == "other"


def test_readiness_names_the_workers_own_problems() -> None:
    plane = _plane(["wine"], {})
    plane.problems = {"metrics": "metrics directory /x is full"}
    plane.ready = False  # ModelSet.ready counts its problems
    status, body = readiness(plane)
    assert status == 503 and body["problems"] == {"metrics": "metrics directory /x is full"}
    assert "problems" not in readiness(_plane(["wine"], {}))[1]
