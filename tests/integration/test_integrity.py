"""Integrity at load: model.onnx must match the sha256 registered for it, and serving never
unpickles anything: no ``pickle.find_class`` audit event while every model loads and answers
(BentoML imports cloudpickle, but nothing is unpickled), and no scikit-learn or joblib."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiln.errors import ArtifactError
from kiln.runtime import ModelRuntime
from kiln.store import StoredModel, get_model
from tests.conftest import CHURN_ROW, REPO

pytestmark = pytest.mark.integration


def test_a_changed_model_file_is_refused(served_models: dict[str, Any], tmp_path: Path) -> None:
    stored = get_model(served_models["churn"].tag)
    copy = tmp_path / "churn"
    shutil.copytree(stored.path, copy)
    ModelRuntime(StoredModel(stored.tag, copy, stored.metadata), ["CPUExecutionProvider"])
    onnx = copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    onnx.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the sha256 registered") as caught:
        ModelRuntime(StoredModel(stored.tag, copy, stored.metadata), ["CPUExecutionProvider"])
    assert stored.metadata.onnx_sha256[:12] in caught.value.message


PROBE = """
import json, sys
events = []
sys.addaudithook(lambda event, args: events.append(event) if event.startswith("pickle") else None)
from fastapi.testclient import TestClient
from service.app import create_app
from service.dataplane import DataPlane
from service.settings import ServingSettings

plane = DataPlane.load(ServingSettings())
app = create_app()
app.state.dataplane = plane
row = json.loads(sys.argv[1])
with TestClient(app) as client:
    answer = client.post("/v1/models/churn/predict", json={"instances": [row]})
    assert answer.status_code == 200, answer.text
    inputs = [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP32",
               "data": [1.0 if v is None else v]} for k, v in row.items()]
    assert client.post("/v2/models/churn/infer", json={"inputs": inputs}).status_code == 200
print(json.dumps({"pickle_events": events,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                    ("sklearn", "joblib", "skl2onnx"))}))
"""


def test_serving_never_unpickles(served_models: dict[str, Any]) -> None:
    env = {
        **os.environ,
        "KILN_SERVE_MODELS": json.dumps([m.tag for m in served_models.values()]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CHURN_ROW)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"pickle_events": [], "modules": []}
