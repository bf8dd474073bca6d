"""The fast lane answers exactly as FastAPI's own routing does, without going through it."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import starlette.routing
from fastapi.testclient import TestClient

from service.app import create_app
from service.dataplane import DataPlane
from service.fastlane import FAST_ROUTES
from service.settings import ServingSettings
from tests.conftest import CHURN_ROW

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plane(served_models: dict[str, Any]) -> DataPlane:
    settings = ServingSettings(
        models=[m.tag for m in served_models.values()], max_rows_per_request=5
    )
    return DataPlane.load(settings)


def client_for(plane: DataPlane, *, fast_lane: bool) -> TestClient:
    app = create_app(fast_lane=fast_lane)
    app.state.dataplane = plane
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def clients(plane: DataPlane) -> Iterator[tuple[TestClient, TestClient]]:
    with client_for(plane, fast_lane=True) as fast, client_for(plane, fast_lane=False) as slow:
        yield fast, slow


def _binary_request(served: Any) -> tuple[bytes, dict[str, str]]:
    inputs, chunks = [], []
    for feature in served.metadata.features:
        value = CHURN_ROW[feature.name]
        if feature.kind.value == "numeric":
            raw = struct.pack("<f", float("nan") if value is None else value)
            datatype = "FP32"
        else:
            raw, datatype = struct.pack("<I", len(value)) + value.encode(), "BYTES"
        inputs.append({"name": feature.name, "shape": [1], "datatype": datatype,
                       "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
        chunks.append(raw)
    header = json.dumps(
        {
            "inputs": inputs,
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def requests_to_compare(plane: DataPlane) -> list[tuple[str, bytes, dict[str, str]]]:
    churn = plane.get("churn")
    version = churn.version
    v2 = {"inputs": [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str)
                      else "FP32", "data": [v]} for k, v in CHURN_ROW.items()]}  # fmt: skip
    binary, headers = _binary_request(churn)
    good = json.dumps({"instances": [CHURN_ROW]}).encode()
    return [
        ("/v1/models/churn/predict", good, {}),
        ("/v1/models/churn/predict", b"{not json", {}),
        ("/v1/models/churn/predict", json.dumps({"instances": [CHURN_ROW] * 6}).encode(), {}),
        ("/v1/models/churn/predict", json.dumps({"instances": [{"age": "x"}]}).encode(), {}),
        ("/v1/models/nope/predict", good, {}),
        ("/v2/models/churn/infer", json.dumps(v2).encode(), {}),
        (f"/v2/models/churn/versions/{version}/infer", json.dumps(v2).encode(), {}),
        ("/v2/models/churn/versions/0000/infer", json.dumps(v2).encode(), {}),
        ("/v2/models/churn/infer", binary, headers),
        ("/v2/models/churn/infer", binary, {"Inference-Header-Content-Length": "x"}),
        ("/v2/models/churn/infer", b"[]", {}),
    ]


def test_fast_lane_answers_exactly_as_fastapi_routing(
    clients: tuple[TestClient, TestClient], plane: DataPlane
) -> None:
    fast, slow = clients
    statuses = set()
    for path, body, headers in requests_to_compare(plane):
        a = fast.post(path, content=body, headers=headers)
        b = slow.post(path, content=body, headers=headers)
        assert (a.status_code, a.content) == (b.status_code, b.content), path
        assert a.headers.get("content-type") == b.headers.get("content-type")
        assert a.headers.get("inference-header-content-length") == b.headers.get(
            "inference-header-content-length"
        )
        statuses.add(a.status_code)
    assert statuses == {200, 400, 404, 413}


def test_inference_routes_skip_the_router_and_the_rest_do_not(
    clients: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, _ = clients
    handled: list[str] = []
    original = starlette.routing.Route.handle

    async def spy(self: starlette.routing.Route, scope: Any, receive: Any, send: Any) -> None:
        handled.append(self.path)
        await original(self, scope, receive, send)

    monkeypatch.setattr(starlette.routing.Route, "handle", spy)
    assert fast.post("/v1/models/churn/predict", json={"instances": [CHURN_ROW]}).status_code == 200
    assert fast.post("/v1/noop", content=b"{}").status_code == 200
    assert fast.get("/v1/models/churn").status_code == 200
    assert handled == ["/v1/models/{name}"]
    assert set(FAST_ROUTES) <= {getattr(r, "path", None) for r in fast.app.routes}  # type: ignore[attr-defined]


def test_an_unexpected_error_is_a_json_500(
    clients: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, _ = clients

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("service.app.decode_instances", boom)
    response = fast.post("/v1/models/churn/predict", json={"instances": [CHURN_ROW]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}


def test_the_fast_routes_come_first(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    paths = [getattr(r, "path", None) for r in fast.app.routes]  # type: ignore[attr-defined]
    assert set(paths[: len(FAST_ROUTES)]) == set(FAST_ROUTES)
    assert fast.get("/openapi.json").status_code == 200  # the rest still answer
