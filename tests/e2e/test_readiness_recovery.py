"""A model that failed to load and whose files are restored serves again, and /readyz says so.

churn is pinned (``NAME:VERSION``) and diabetes follows production; both start with a damaged
model.onnx, so /readyz answers 503 naming them. Once the files are restored the next poll
(KILN_SERVE_POLL_SECONDS=1) loads them: /readyz answers 200, kiln_model_ready is 1 and
predict answers.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _onnx(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "models" / name / version / "model.onnx"


def _ready_gauge(metrics: str, model: str) -> float:
    found = re.search(rf'^kiln_model_ready\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$', metrics, re.M)
    assert found, f"no kiln_model_ready for {model}"
    return float(found.group(1))


def test_restored_models_are_ready_again(
    served_models: dict[str, Any], bentoml_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "store"
    shutil.copytree(bentoml_home / "models", home / "models")
    churn, diabetes = (
        _onnx(home, served_models["churn"].tag),
        _onnx(home, served_models["diabetes"].tag),
    )
    good = {churn: churn.read_bytes(), diabetes: diabetes.read_bytes()}
    churn.write_bytes(good[churn] + b"\0")  # the sha256 no longer matches
    diabetes.unlink()
    settings = {
        "BENTOML_HOME": str(home),
        "KILN_SERVE_POLL_SECONDS": "1",
        "KILN_SERVE_MODELS": json.dumps([served_models["churn"].tag, "diabetes", "wine"]),
    }
    with kiln_server(served_models, tmp_path / "server.log", wait_for="/livez", **settings) as url:
        body = httpx.get(f"{url}/readyz").json()
        assert set(body["failed"]) == {"churn", "diabetes"}, body
        for path, content in good.items():
            path.write_bytes(content)
        deadline = time.monotonic() + 20
        while (ready := httpx.get(f"{url}/readyz")).status_code != 200:
            assert time.monotonic() < deadline, f"still not ready after the restore: {ready.text}"
            time.sleep(0.5)
        assert ready.json()["failed"] == {}
        assert set(ready.json()["models"]) == {"churn", "diabetes", "wine"}
        metrics = httpx.get(f"{url}/metrics").text
        assert _ready_gauge(metrics, "churn") == 1 and _ready_gauge(metrics, "diabetes") == 1
        answer = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [CHURN_ROW]})
        assert answer.status_code == 200, answer.text
