"""A model that cannot be loaded is refused on its own: the others serve, /readyz names it.

The store is a copy of the test store in which one model's model.onnx was changed after
registration (its sha256 no longer matches kiln.json), one lost its model.onnx, and one's
kiln.json claims a schema version from a newer Kiln.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _model_dir(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "models" / name / version


def _metric(text: str, name: str, model: str) -> float:
    pattern = rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def damaged(
    served_models: dict[str, Any], bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    home = tmp_path_factory.mktemp("damaged-store")
    shutil.copytree(bentoml_home / "models", home / "models")
    churn = _model_dir(home, served_models["churn"].tag) / "model.onnx"
    churn.write_bytes(churn.read_bytes() + b"\0")  # one byte more: the sha256 changes
    (_model_dir(home, served_models["diabetes"].tag) / "model.onnx").unlink()
    return home


def test_damaged_models_are_refused_and_the_rest_serve(
    served_models: dict[str, Any], damaged: Path, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with kiln_server(served_models, log, wait_for="/livez", BENTOML_HOME=str(damaged)) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["models"] == {"wine": "ready"}
        assert set(body["failed"]) == {"churn", "diabetes"}
        assert "sha256" in body["failed"]["churn"]
        assert "model.onnx is unreadable" in body["failed"]["diabetes"]

        wine = httpx.get(f"{url}/v1/models/wine").json()
        row = dict.fromkeys((f["name"] for f in wine["features"]), 13.0)
        answer = httpx.post(f"{url}/v1/models/wine/predict", json={"instances": [row]})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1

        refused = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [CHURN_ROW]})
        assert refused.status_code == 503 and "sha256" in refused.json()["error"]
        v2 = httpx.get(f"{url}/v2/models/diabetes/ready")
        assert v2.status_code == 503 and "not ready" in v2.json()["error"]

        metrics = httpx.get(f"{url}/metrics").text
        assert _metric(metrics, "kiln_model_ready", "churn") == 0
        assert _metric(metrics, "kiln_model_ready", "wine") == 1
        assert _metric(metrics, "kiln_model_load_failures_total", "churn") == 1
        assert _metric(metrics, "kiln_model_load_failures_total", "diabetes") == 1
    text = log.read_text()
    assert re.search(r"model churn cannot be served: .*sha256", text)
    assert re.search(r"model diabetes cannot be served: .*model\.onnx is unreadable", text)


def test_a_metadata_schema_from_a_newer_kiln_is_refused(
    served_models: dict[str, Any], damaged: Path, tmp_path: Path
) -> None:
    home = tmp_path / "store"
    shutil.copytree(damaged, home)
    meta = _model_dir(home, served_models["wine"].tag) / "kiln.json"
    document = json.loads(meta.read_text())
    meta.write_text(json.dumps({**document, "schema_version": document["schema_version"] + 1}))
    settings = {
        "BENTOML_HOME": str(home),
        "KILN_SERVE_MODELS": json.dumps([served_models["wine"].tag]),
    }
    with kiln_server(served_models, tmp_path / "server.log", wait_for="/livez", **settings) as url:
        body = httpx.get(f"{url}/readyz").json()
        assert body["models"] == {} and "newer Kiln" in body["failed"]["wine"]
