"""Overload on the real server: far more concurrent requests than it takes. What it cannot
take is answered 503 with Retry-After (a bounded batching queue and a concurrency limit, both
settings), /livez and the other health routes (V2's too) keep answering, nothing crashes, and
it recovers by itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import hey_statuses, kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECONDS = 8


def test_overload_sheds_with_503_keeps_probes_and_recovers(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    if shutil.which("hey") is None:
        pytest.skip("hey is missing: apt-get install hey (.ci/run installs it)")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": [CHURN_ROW]}))
    settings = {"KILN_SERVE_MAX_CONCURRENCY": "48", "KILN_SERVE_MAX_QUEUE_ROWS": "8"}
    with kiln_server(served_models, tmp_path / "server.log", **settings) as url:
        predict = f"{url}/v1/models/churn/predict"
        probes: list[tuple[int, float]] = []
        refused: list[httpx.Response] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                started = time.monotonic()
                status = httpx.get(f"{url}/livez", timeout=10).status_code
                probes.append((status, time.monotonic() - started))
                time.sleep(0.2)

        def sample() -> None:  # requests of our own, to read a refusal's headers and body
            with httpx.Client(timeout=10) as client:
                while not stop.is_set() and len(refused) < 5:
                    answer = client.post(predict, json={"instances": [CHURN_ROW]})
                    if answer.status_code == 503:
                        refused.append(answer)

        helpers = [threading.Thread(target=probe), threading.Thread(target=sample)]
        for thread in helpers:
            thread.start()
        argv = ["hey", "-z", f"{SECONDS}s", "-c", "256", "-m", "POST"]
        argv += ["-T", "application/json", "-D", str(body), "-t", "20", predict]
        load = subprocess.run(
            argv, capture_output=True, text=True, timeout=SECONDS + 60, check=True
        )
        stop.set()
        for thread in helpers:
            thread.join(30)

        statuses = hey_statuses(load.stdout)
        assert set(statuses) == {200, 503}, load.stdout
        assert statuses[503] > statuses[200] * 0.1  # it really was over capacity
        assert "Error distribution" not in load.stdout  # no connection error, no timeout
        assert probes and all(status == 200 for status, _ in probes)
        slowest = max(took for _, took in probes)
        print(
            f"\noverload: {statuses}, {len(probes)} probes, slowest {slowest:.2f} s",
            file=sys.stderr,
        )
        assert max(took for _, took in probes) < 2.0
        assert refused, "no 503 seen by the sampling client"
        for answer in refused:
            assert answer.headers["retry-after"] == "1"
            assert answer.headers["content-type"] == "application/json"
            assert "retry" in answer.json()["error"]
        metrics = httpx.get(f"{url}/metrics").text
        assert re.search(
            r'kiln_request_errors_total\{model="churn",reason="overloaded"\} [1-9]', metrics
        )

        time.sleep(1.0)  # the load is gone: it answers everything again, by itself
        with httpx.Client(timeout=10) as client:
            for _ in range(50):
                answer = client.post(predict, json={"instances": [CHURN_ROW]})
                assert answer.status_code == 200, answer.text
        assert httpx.get(f"{url}/readyz").status_code == 200


HEALTH = ["/livez", "/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"]


def test_health_routes_of_both_protocols_pass_a_full_concurrency_limit(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    """One request holds the only slot (its body arrives slowly): a model route is refused,
    every health route, V2's included, still answers 200."""
    with kiln_server(served_models, tmp_path / "server.log", KILN_SERVE_MAX_CONCURRENCY="1") as url:
        release = threading.Event()
        held: list[httpx.Response] = []

        def slow_body() -> Iterator[bytes]:
            yield b'{"instances": ['
            release.wait(30)
            yield json.dumps(CHURN_ROW).encode() + b"]}"

        def hold() -> None:
            headers = {"content-type": "application/json"}
            held.append(
                httpx.post(
                    f"{url}/v1/models/churn/predict",
                    content=slow_body(),
                    headers=headers,
                    timeout=60,
                )
            )

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            deadline = time.monotonic() + 20
            while httpx.get(f"{url}/v1/models", timeout=10).status_code != 503:
                assert time.monotonic() < deadline, "the held request never took the slot"
                time.sleep(0.05)
            for path in HEALTH:
                answer = httpx.get(f"{url}{path}", timeout=10)
                assert answer.status_code == 200, (path, answer.text)
            assert httpx.get(f"{url}/v2/models/churn", timeout=10).status_code == 503
        finally:
            release.set()
            holder.join(60)
        assert held and held[0].status_code == 200, held
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200
