"""The reference for the serving benchmark: a plain FastAPI app over ONNX Runtime.

It serves ONE Kiln model with none of Kiln's serving machinery (no BentoML, no batching, no
validation beyond what building the tensors needs, no metrics, no access log), so the
benchmark can show what Kiln's own layers cost on top of the same model and the same HTTP
server (uvicorn, same event loop and HTTP parser as BentoML's worker)::

    KILN_BENCH_MODEL_DIR=$BENTOML_HOME/models/breast-cancer/<version> \\
        .venv/bin/uvicorn --app-dir bench plain_fastapi_ort:app --port 8001 --no-access-log

``KILN_BENCH_MODEL_DIR`` is a directory holding ``model.onnx`` and ``kiln.json``. Routes:

- ``POST /predict``: ``{"instances": [{feature: value, ...}, ...]}`` in; the same answer as
  Kiln's ``POST /v1/models/{name}/predict`` out (model, version, predictions and per-class
  probabilities, or predictions alone for a regressor). ONNX Runtime runs inline, on the
  event loop: fine for small requests, which is all this reference is for.
- ``POST /noop``: reads the body, answers ``{"ok": true}``: the HTTP ceiling of this app.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from kiln.artifact import FeatureKind, read_metadata

__all__ = ["app"]

JSON = "application/json"

_model_dir = Path(os.environ["KILN_BENCH_MODEL_DIR"])
_meta = read_metadata(_model_dir)
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1  # as Kiln's default (KILN_SERVE_INTRA_OP_THREADS=1)
_options.inter_op_num_threads = 1
_session = ort.InferenceSession(
    str(_model_dir / "model.onnx"), _options, providers=["CPUExecutionProvider"]
)
_features = [(f.name, f.kind is FeatureKind.numeric, f.input) for f in _meta.features]
_outputs = [o.name for o in _meta.outputs]
_classes = [str(c) for c in _meta.classes] if _meta.classes is not None else None
_score_key = "probabilities" if "probabilities" in _outputs else "scores"
_ok = orjson.dumps({"ok": True})

app = FastAPI(title="plain FastAPI + ONNX Runtime (Kiln benchmark reference)")


def _feeds(instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One [N, 1] tensor per ONNX input: float32 (None becomes NaN) or str (None: "")."""
    feeds: dict[str, np.ndarray] = {}
    for name, numeric, onnx_input in _features:
        if numeric:  # numpy turns None into NaN, Kiln's "missing"
            feeds[onnx_input] = np.array([[row[name]] for row in instances], dtype=np.float32)
        else:
            feeds[onnx_input] = np.array(
                [[row[name] if row[name] is not None else ""] for row in instances],
                dtype=object,
            )
    return feeds


def _answer(results: list[Any]) -> dict[str, Any]:
    outputs = dict(zip(_outputs, results, strict=True))
    answer: dict[str, Any] = {"model": _meta.name, "version": _meta.version}
    if _classes is None:
        answer["predictions"] = outputs["prediction"].reshape(-1).tolist()
        return answer
    answer["predictions"] = outputs["label"].tolist()
    answer[_score_key] = [
        dict(zip(_classes, row, strict=True)) for row in outputs[_score_key].tolist()
    ]
    return answer


@app.post("/predict")
async def predict(request: Request) -> Response:
    """Predict on the instances of the body; ONNX Runtime runs inline."""
    payload = orjson.loads(await request.body())
    results = _session.run(_outputs, _feeds(payload["instances"]))
    return Response(orjson.dumps(_answer(results)), media_type=JSON)


@app.post("/noop")
async def noop(request: Request) -> Response:
    """Read the body and answer ``{"ok": true}``."""
    await request.body()
    return Response(_ok, media_type=JSON)
