"""API keys on the real server: every inference and admin route of both protocols needs one;
health and metrics stay open; keys never reach the log."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEYS, CHURN_ROW
from tests.servers import kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _routes(version: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request) of every route that needs a key, with a valid request."""
    row = {**CHURN_ROW, "data_gb": 1.5}  # V2 JSON has no null (NaN travels only in binary)
    v2_inputs = [
        {
            "name": name,
            "shape": [1],
            "datatype": "BYTES" if isinstance(value, str) else "FP32",
            "data": [value],
        }
        for name, value in row.items()
    ]
    infer = {"json": {"inputs": v2_inputs}}
    return [
        ("GET", "/v1/models", {}),
        ("GET", "/v1/models/churn", {}),
        ("POST", "/v1/models/churn/predict", {"json": {"instances": [CHURN_ROW]}}),
        ("POST", "/v1/noop", {"content": b"{}"}),
        ("GET", "/v2", {}),
        ("GET", "/v2/models/churn", {}),
        ("GET", f"/v2/models/churn/versions/{version}", {}),
        ("GET", "/v2/models/churn/ready", {}),
        ("GET", f"/v2/models/churn/versions/{version}/ready", {}),
        ("POST", "/v2/models/churn/infer", infer),
        ("POST", f"/v2/models/churn/versions/{version}/infer", infer),
        ("GET", "/openapi.json", {}),
        ("GET", "/docs", {}),
    ]


OPEN = ["/livez", "/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"]


def test_every_route_needs_a_key_and_takes_each_key(
    keyed_server: tuple[str, Path], served_models: dict[str, Any]
) -> None:
    url, _ = keyed_server
    for method, path, request in _routes(served_models["churn"].metadata.version):
        for headers in ({}, {"Authorization": "Bearer not-a-key"}):
            refused = httpx.request(method, url + path, headers=headers, **request)
            assert refused.status_code == 401, (method, path, headers)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert refused.json()["error"]
        for key in API_KEYS:
            answer = httpx.request(
                method, url + path, headers={"Authorization": f"Bearer {key}"}, **request
            )
            assert answer.status_code == 200, (method, path, answer.text[:300])


def test_health_metrics_and_the_page_stay_open(keyed_server: tuple[str, Path]) -> None:
    url, _ = keyed_server
    for path in [*OPEN, "/try", "/try/try.js"]:
        assert httpx.get(url + path).status_code == 200, path


def test_keys_never_reach_the_log(keyed_server: tuple[str, Path]) -> None:
    url, log = keyed_server
    for key in (*API_KEYS, "a-wrong-key"):
        httpx.post(
            f"{url}/v1/models/churn/predict",
            json={"instances": [CHURN_ROW]},
            headers={"Authorization": f"Bearer {key}"},
        )
    text = log.read_text()
    assert "path=/v1/models/churn/predict" in text  # the access log is on, and says nothing
    for key in (*API_KEYS, "a-wrong-key"):
        assert key not in text


def test_a_setting_closes_health_and_metrics_too(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    settings = {"KILN_SERVE_API_KEYS": "k1,k2", "KILN_SERVE_PROTECT_HEALTH": "true"}
    with kiln_server(served_models, tmp_path / "log", wait_for="/try", **settings) as url:
        for path in OPEN:
            assert httpx.get(url + path).status_code == 401, path
            ok = httpx.get(url + path, headers={"Authorization": "Bearer k2"})
            assert ok.status_code == 200, path


def test_binary_v2_requests_need_a_key_too(
    keyed_server: tuple[str, Path], served_models: dict[str, Any]
) -> None:
    url, _ = keyed_server
    wine = served_models["wine"].metadata
    inputs, chunks = [], []
    for feature in wine.features:
        raw = struct.pack("<f", 13.0)
        inputs.append({"name": feature.name, "shape": [1], "datatype": "FP32",
                       "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
        chunks.append(raw)
    header = json.dumps({"inputs": inputs}).encode()
    body = header + b"".join(chunks)
    headers = {"Inference-Header-Content-Length": str(len(header))}
    assert (
        httpx.post(f"{url}/v2/models/wine/infer", content=body, headers=headers).status_code == 401
    )
    headers["Authorization"] = f"Bearer {API_KEYS[2]}"
    answer = httpx.post(f"{url}/v2/models/wine/infer", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["outputs"]
