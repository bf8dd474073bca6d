"""A real Prometheus scrapes the real Kiln server and evaluates deploy/monitoring's rules.

The server starts as tests/e2e/test_server.py starts it (`bentoml serve` from the repository
root on 127.0.0.1, the test store with churn, wine and diabetes); Prometheus scrapes it
every second with the real rule files evaluated every second; a bounded load over JSON, V2
REST and V2 gRPC with some bad requests runs; then the raw series, the recording rules and
every dashboard query must answer for wine, with sane values, the data plane's counters
holding both protocols' requests and BentoML's only the HTTP ones. Loopback only; both
processes are killed at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.servers import kiln_grpc_server, prometheus_query, prometheus_server, wait_for

PROMETHEUS = shutil.which("prometheus")
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rules" / "kiln-rules.yaml"
DASHBOARD = MONITORING / "grafana" / "kiln-dashboard.json"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)"
    ),
]


@pytest.fixture(scope="module")
def served(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The real server, with its gRPC front: (HTTP URL, gRPC target). The drift gauges are
    shown after 100 rows (the load sends about 600 to wine), so that the dashboard's drift
    panels have data too."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    settings = {"KILN_SERVE_DRIFT_MIN_ROWS": "100", "KILN_SERVE_DRIFT_INTERVAL": "0.5"}
    with kiln_grpc_server(served_models, log, **settings) as (url, target):
        yield url, target


@pytest.fixture(scope="module")
def server(served: tuple[str, str]) -> str:
    return served[0]


@pytest.fixture(scope="module")
def prometheus(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PROMETHEUS is not None
    home = tmp_path_factory.mktemp("prometheus")
    with prometheus_server(PROMETHEUS, server, [RULES], home) as url:
        yield url


@dataclass
class Load:
    good: int  # every protocol
    bad: int
    rows: int
    http: int = 0  # of good + bad, the HTTP ones (BentoML counts only these)
    grpc_good: int = 0
    grpc_bad: int = 0


@pytest.fixture(scope="module")
def load(served: tuple[str, str], prometheus: str) -> Iterator[Load]:
    """350 requests to wine in 10 concurrent waves a second apart: 30 over HTTP (3 bad) and
    5 over gRPC (1 bad) in each."""
    import numpy as np
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    server, target = served
    features = [f["name"] for f in httpx.get(f"{server}/v1/models/wine").json()["features"]]
    grpc_client = triton.InferenceServerClient(target)

    def over_grpc(i: int) -> str:
        """One gRPC ModelInfer of 1-2 rows, the last of each wave with a wrong shape; its
        status code's name."""
        n = 1 + i % 2
        shape = [n, 2] if i % 5 == 4 else [n, 1]  # [N, 2]: INVALID_ARGUMENT
        inputs = []
        for j, f in enumerate(features):
            tensor = triton.InferInput(f, shape, "FP32")
            values = [11.0 + (i + r + j) % 4 for r in range(n * shape[1])]
            tensor.set_data_from_numpy(np.array(values, dtype=np.float32).reshape(shape))
            inputs.append(tensor)
        try:
            grpc_client.infer("wine", inputs, client_timeout=30)
        except InferenceServerException as exc:
            return str(exc.status()).removeprefix("StatusCode.")
        return "OK"

    with (
        httpx.Client(base_url=server, timeout=30) as client,
        ThreadPoolExecutor(16) as pool,
    ):

        def good(i: int) -> tuple[int, int]:
            n = 1 + i % 3  # rows in this request
            rows = [{f: 11.0 + (i + r + j) % 4 for j, f in enumerate(features)} for r in range(n)]
            if i % 5:
                response = client.post("/v1/models/wine/predict", json={"instances": rows})
            else:  # the Open Inference Protocol route counts as well
                tensors = [
                    {"name": f, "shape": [n, 1], "datatype": "FP32", "data": [r[f] for r in rows]}
                    for f in features
                ]
                response = client.post("/v2/models/wine/infer", json={"inputs": tensors})
            return response.status_code, n

        def bad(i: int) -> int:
            body = {"instances": [{"alcohol": "not a number"}]} if i % 2 else {"instances": []}
            return client.post("/v1/models/wine/predict", json=body).status_code

        sent = Load(good=0, bad=0, rows=0)
        try:
            for wave in range(10):
                started = time.monotonic()
                answers = list(pool.map(good, range(wave * 27, wave * 27 + 27)))
                failures = list(pool.map(bad, range(3)))
                calls = list(pool.map(over_grpc, range(wave * 5, wave * 5 + 5)))
                assert {status for status, _ in answers} == {200}
                assert set(failures) == {400}
                assert calls == ["OK"] * 4 + ["INVALID_ARGUMENT"], calls
                sent.good += len(answers) + 4
                sent.rows += sum(n for _, n in answers)
                sent.rows += sum(1 + i % 2 for i in range(wave * 5, wave * 5 + 4))
                sent.bad += len(failures) + 1
                sent.http += len(answers) + len(failures)
                sent.grpc_good += 4
                sent.grpc_bad += 1
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        finally:
            grpc_client.close()
    yield sent


def value(prometheus: str, expr: str) -> float | None:
    result = prometheus_query(prometheus, expr)
    assert len(result) <= 1, (expr, result)
    return float(result[0]["value"][1]) if result else None


def test_raw_series_and_recording_rules_for_wine(load: Load, server: str, prometheus: str) -> None:
    # Prometheus' last scrape holds every row the server counted.
    rows_total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in httpx.get(f"{server}/metrics").text.splitlines()
        if line.startswith("kiln_rows_received_total{") and 'model="wine"' in line
    )
    assert rows_total == load.rows

    def scraped_all() -> float | None:
        got = value(prometheus, 'sum(kiln_rows_received_total{job="kiln", model="wine"})')
        return got if got == rows_total else None

    wait_for(f"kiln_rows_received_total of {rows_total:.0f} rows for wine", scraped_all, poll=0.5)
    info = prometheus_query(prometheus, 'kiln_model_info{job="kiln", model="wine"}')
    assert len(info) == 1 and info[0]["metric"]["provider"] == "CPUExecutionProvider"

    recorded = {
        name: wait_for(
            name, lambda name=name: value(prometheus, f'{name}{{model="wine"}}'), poll=0.5
        )
        for name in (
            "model:bentoml_service_request:rate1m",
            "model:bentoml_service_request:rate5m",
            "model:kiln_rows_received:rate1m",
            "model:kiln_request_errors:ratio_rate5m",
            "model:kiln_inference_duration_seconds:p50_rate5m",
            "model:kiln_inference_duration_seconds:p99_rate5m",
            "model:bentoml_service_request_duration_seconds:p99_rate5m",
            "model:kiln_batch_rows:mean_rate5m",
            "model:kiln_batch_wait_seconds:p99_rate5m",
        )
    }
    assert recorded["model:bentoml_service_request:rate1m"] > 0
    assert recorded["model:bentoml_service_request:rate5m"] > 0
    assert recorded["model:kiln_rows_received:rate1m"] > 0
    assert 0 < recorded["model:kiln_request_errors:ratio_rate5m"] < 0.5  # 3 bad in 30
    assert 0 < recorded["model:kiln_inference_duration_seconds:p50_rate5m"] < 5
    assert (
        recorded["model:kiln_inference_duration_seconds:p50_rate5m"]
        <= recorded["model:kiln_inference_duration_seconds:p99_rate5m"]
        < 5
    )
    assert 0 < recorded["model:bentoml_service_request_duration_seconds:p99_rate5m"] < 10
    assert 1 <= recorded["model:kiln_batch_rows:mean_rate5m"] <= 64
    assert 0 <= recorded["model:kiln_batch_wait_seconds:p99_rate5m"] < 5
    # BentoML's counter, from which the request rate and the error ratio's denominator
    # come, holds every HTTP inference request to wine (both routes, good and bad), and no
    # gRPC call; Kiln's error counter every bad one, gRPC's too; the gRPC front's own
    # counter its calls by status code.
    for expr, expected in (
        (
            'sum(bentoml_service_request_total{job="kiln", endpoint=~"/v[12]/models/wine/.*"})',
            load.http,
        ),
        ('sum(kiln_request_errors_total{job="kiln", model="wine"})', load.bad),
        (
            'sum(kiln_grpc_requests_total{job="kiln", method="ModelInfer", code="OK"})',
            load.grpc_good,
        ),
        (
            'sum(kiln_grpc_requests_total{job="kiln", method="ModelInfer", '
            'code="INVALID_ARGUMENT"})',
            load.grpc_bad,
        ),
    ):
        wait_for(
            f"{expr} == {expected}",
            lambda expr=expr, expected=expected: value(prometheus, expr) == expected or None,
            poll=0.5,
        )


def test_rules_evaluate_without_errors_and_nothing_fires(load: Load, prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        response = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()
        rules = [rule for group in response["data"]["groups"] for rule in group["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_for("evaluated rules", evaluated, poll=0.5)
    assert {r["name"] for r in rules if r["type"] == "alerting"} == {
        "KilnDown",
        "KilnHighErrorRatio",
        "KilnP99LatencyOverBudget",
        "KilnModelNotReady",
        "KilnBatchesQueuingPastWaitLimit",
        "KilnFeatureDrift",
        "KilnPredictionDrift",
        "KilnUnseenCategories",
    }
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    firing = [a["labels"] for a in alerts if a["state"] == "firing"]
    assert not firing
    assert value(prometheus, 'up{job="kiln"}') == 1


def test_every_dashboard_query_returns_data_for_wine(load: Load, prometheus: str) -> None:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    targets = [
        (panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    assert targets
    for title, ref, expr in targets:
        concrete = re.sub(r"\$\{?__rate_interval\}?", "1m", expr)
        concrete = re.sub(r"\$\{?model\}?", "wine", concrete)
        assert "$" not in concrete, (title, expr)
        wait_for(
            f"data for panel {title!r} {ref}: {concrete}",
            lambda q=concrete: prometheus_query(prometheus, q) or None,
            poll=0.5,
        )
