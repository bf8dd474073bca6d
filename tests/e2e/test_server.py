"""The real BentoML server, started as a user starts it, called over HTTP.

`bentoml serve` from the repository root (through bentofile.yaml), on 127.0.0.1, serving the
test store; both protocols, tritonclient with its default binary tensors, batching seen in
/metrics, bad input, readiness.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from kiln import Predictor
from tests.conftest import CHURN_ROW
from tests.servers import kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with kiln_server(served_models, log, KILN_SERVE_MAX_BODY_BYTES="1048576") as url:
        yield url


def test_health_and_model_list(server: str, served_models: dict[str, Any]) -> None:
    assert httpx.get(f"{server}/livez").status_code == 200
    assert httpx.get(f"{server}/readyz").status_code == 200
    assert httpx.get(f"{server}/v2/health/ready").json() == {"ready": True}
    listed = httpx.get(f"{server}/v1/models").json()["models"]
    assert {m["name"]: m["version"] for m in listed} == {
        name: stored.metadata.version for name, stored in served_models.items()
    }


def test_json_records_match_the_in_process_predictor(
    server: str, served_models: dict[str, Any]
) -> None:
    rows = [CHURN_ROW, {**CHURN_ROW, "contract": "annual", "plan": None, "age": None}]
    response = httpx.post(f"{server}/v1/models/churn/predict", json={"instances": rows})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == Predictor.from_store(served_models["churn"].tag).predict(rows)


def test_tritonclient_with_default_binary_tensors(
    server: str, served_models: dict[str, Any]
) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn")
    meta = client.get_model_metadata("churn")
    rows = [CHURN_ROW, {**CHURN_ROW, "tenure_months": 50, "contract": "two-year"}]
    inputs = []
    for spec in meta["inputs"]:  # built from the metadata alone
        values = [row[spec["name"]] for row in rows]
        if spec["datatype"] == "FP32":
            array = np.array([[np.nan if v is None else v] for v in values], dtype=np.float32)
        else:
            array = np.array([[v] for v in values], dtype=object)
        tensor = triton.InferInput(spec["name"], [len(rows), 1], spec["datatype"])
        tensor.set_data_from_numpy(array)  # binary_data=True by default
        inputs.append(tensor)
    result = client.infer("churn", inputs, request_id="42")
    assert result.get_response()["id"] == "42"
    expected = Predictor.from_store(served_models["churn"].tag).predict(rows)
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    assert labels == expected["predictions"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        [[p["no"], p["yes"]] for p in expected["probabilities"]],
        rtol=1e-6,
    )
    requested = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    json_only = client.infer("churn", inputs, outputs=requested)
    assert json_only.as_numpy("label") is None
    assert json_only.as_numpy("probabilities").shape == (2, 2)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_concurrent_requests_form_batches_of_more_than_one_row(server: str) -> None:
    features = [f["name"] for f in httpx.get(f"{server}/v1/models/wine").json()["features"]]
    body = {"instances": [dict.fromkeys(features, 13.0)]}

    def one(_: int) -> int:
        return httpx.post(f"{server}/v1/models/wine/predict", json=body, timeout=30).status_code

    before = httpx.get(f"{server}/metrics").text
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == [200] * 200
    after = httpx.get(f"{server}/metrics").text
    calls = _metric(after, "kiln_batch_rows_count", model="wine") - _metric(
        before, "kiln_batch_rows_count", model="wine"
    )
    rows = _metric(after, "kiln_batch_rows_sum", model="wine") - _metric(
        before, "kiln_batch_rows_sum", model="wine"
    )
    assert rows == 200
    assert calls < 200  # some ONNX Runtime calls took more than one request's row
    single = _metric(after, "kiln_batch_rows_bucket", model="wine", le="1.0") - _metric(
        before, "kiln_batch_rows_bucket", model="wine", le="1.0"
    )
    assert single < calls
    assert _metric(after, "kiln_predictions_total", model="wine") >= 200
    assert _metric(after, "kiln_rows_received_total", model="wine") >= 200


def test_metrics_families_and_error_counts(server: str) -> None:
    bad = httpx.post(f"{server}/v1/models/churn/predict", json={"instances": [{"age": "x"}]})
    assert bad.status_code == 400 and "error" in bad.json()
    assert httpx.post(f"{server}/v1/models/nope/predict", json={}).status_code == 404
    text = httpx.get(f"{server}/metrics").text
    for family in (
        "kiln_inference_duration_seconds_bucket",
        "kiln_batch_rows_bucket",
        "kiln_batch_wait_seconds_bucket",
        "kiln_rows_received_total",
        "kiln_request_errors_total",
        "kiln_model_info",
    ):
        assert family in text, family
    assert _metric(text, "kiln_request_errors_total", model="churn", reason="invalid_input") >= 1
    unknown = _metric(text, "kiln_request_errors_total", model="_unknown", reason="model_not_found")
    assert unknown >= 1  # a name the worker does not serve is no label of its own
    info = r'kiln_model_info\{[^}]*model="churn"[^}]*provider="CPUExecutionProvider"'
    assert re.search(info, text)
    assert "bentoml_" in text  # BentoML's own request metrics stay


def test_bentoml_request_metrics_count_the_fast_lane_routes(server: str) -> None:
    """The inference routes skip BentoML's routing (service/fastlane.py) but not its metrics
    middleware: the dashboards' request counters see every one, with its status code."""
    counter = "bentoml_service_request_total"
    v1, v2 = "/v1/models/churn/predict", "/v2/models/churn/infer"
    before = httpx.get(f"{server}/metrics").text
    for _ in range(3):
        ok = httpx.post(f"{server}{v1}", json={"instances": [CHURN_ROW]})
        assert ok.status_code == 200
    bad = httpx.post(f"{server}{v2}", json={"inputs": "nope"})
    assert bad.status_code == 400 and "error" in bad.json()
    after = httpx.get(f"{server}/metrics").text

    def grew(endpoint: str, code: str) -> float:
        labels = {"endpoint": endpoint, "http_response_code": code}
        return _metric(after, counter, **labels) - _metric(before, counter, **labels)

    assert grew(v1, "200") == 3
    assert grew(v2, "400") == 1


def test_bad_input_over_http_is_4xx_json_and_the_server_keeps_serving(server: str) -> None:
    cases = [
        (b'{"instances": [', 400),
        (b"", 400),
        (b'{"instances": []}', 400),
        (b'{"instances": [{"x": 1}]}', 400),
        (b"x" * 2_000_000, 413),
    ]
    for body, status in cases:
        response = httpx.post(
            f"{server}/v1/models/churn/predict",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == status, (body[:30], response.text)
        assert "error" in response.json()
    v2 = httpx.post(
        f"{server}/v2/models/churn/infer",
        content=b'{"inputs": []}',
        headers={"Inference-Header-Content-Length": "99"},
    )
    assert v2.status_code == 400 and "error" in v2.json()
    ok = httpx.post(f"{server}/v1/models/churn/predict", json={"instances": [CHURN_ROW]})
    assert ok.status_code == 200
