"""A running server swaps in a newly promoted version without failing a request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kiln.production import promote
from tests.conftest import SPECS
from tests.servers import kiln_server
from training.run import train
from training.spec import parse_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NAME = "swap-wine"


@pytest.fixture(scope="module")
def versions() -> list[str]:
    raw = yaml.safe_load((SPECS / "wine.yaml").read_text())
    tags = []
    for trees in (10, 40):
        raw.update(
            name=NAME,
            estimator={"type": "RandomForestClassifier", "params": {"n_estimators": trees}},
        )
        tags.append(train(parse_spec(raw)).tag)
    promote(tags[0], "first")
    return tags


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swap") / "server.log"


@pytest.fixture(scope="module")
def server(versions: list[str], server_log: Path) -> Iterator[str]:
    with kiln_server(
        {}, server_log, KILN_SERVE_MODELS=f'["{NAME}"]', KILN_SERVE_POLL_SECONDS="0.5"
    ) as url:
        yield url


def test_promotion_is_served_without_dropping_requests(
    server: str, versions: list[str], server_log: Path
) -> None:
    old, new = (tag.split(":")[1] for tag in versions)
    features = [f["name"] for f in httpx.get(f"{server}/v1/models/{NAME}").json()["features"]]
    assert httpx.get(f"{server}/v1/models/{NAME}").json()["version"] == old
    body = {"instances": [dict.fromkeys(features, 12.0)] * 3}
    answers: list[tuple[int, Any]] = []
    ready: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(f"{server}/v1/models/{NAME}/predict", json=body)
                answers.append((response.status_code, response.json().get("version")))

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                ready.append(client.get(f"{server}/readyz").status_code)
                time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(4)] + [threading.Thread(target=probe)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        promote(versions[1], "better")
        deadline = time.monotonic() + 30
        while httpx.get(f"{server}/v1/models/{NAME}").json()["version"] != new:
            assert time.monotonic() < deadline, "the new version was not swapped in within 30 s"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    statuses = {status for status, _ in answers}
    assert statuses == {200}, f"failed requests: {[a for a in answers if a[0] != 200][:5]}"
    served = [version for _, version in answers]
    assert served[0] == old and served[-1] == new
    assert set(ready) == {200}
    metrics = httpx.get(f"{server}/metrics").text
    info = [
        line
        for line in metrics.splitlines()
        if line.startswith("kiln_model_info{") and NAME in line
    ]
    assert any(f'version="{new}"' in line and line.endswith(" 1.0") for line in info)
    assert any(f'version="{old}"' in line and line.endswith(" 0.0") for line in info)
    # one log line names the old and the new version and why (the promotion's reason)
    swaps = [line for line in server_log.read_text().splitlines() if "hot swap" in line]
    assert len(swaps) == 1, swaps
    assert f"now serving {new}, was {old} (promoted: better)" in swaps[0]
