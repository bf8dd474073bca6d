"""The reference for the serving benchmark: a plain FastAPI app over ONNX Runtime.

It serves Kiln models with none of Kiln's serving machinery (no BentoML, no batching, no
validation beyond what building the tensors needs, no metrics, no access log), so the
benchmark can show what Kiln's own layers cost on top of the same model and the same HTTP
server (uvicorn, same event loop and HTTP parser as BentoML's worker)::

    KILN_BENCH_MODEL_DIRS=$BENTOML_HOME/models/breast-cancer/<version> \\
        .venv/bin/uvicorn --app-dir bench plain_fastapi_ort:app --port 8001 --no-access-log

``KILN_BENCH_MODEL_DIRS`` lists directories holding ``model.onnx`` and ``kiln.json``
(separated by ``:``), read at start-up. Routes:

- ``POST /predict/{name}``: ``{"instances": [{feature: value, ...}, ...]}`` in; the same answer as
  Kiln's ``POST /v1/models/{name}/predict`` out (model, version, predictions and per-class
  probabilities, or predictions alone for a regressor). ONNX Runtime runs inline, on the
  event loop: fine for small requests, which is all this reference is for.
- ``POST /noop``: reads the body, answers ``{"ok": true}``: the HTTP ceiling of this app.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


class _Model:
    """One model's session and what building its tensors and answers needs."""

    def __init__(self, model_dir: Path) -> None:
        meta = read_metadata(model_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # as Kiln's default (KILN_SERVE_INTRA_OP_THREADS=1)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.name, self.version = meta.name, meta.version
        self.features = [(f.name, f.kind is FeatureKind.numeric, f.input) for f in meta.features]
        self.outputs = [o.name for o in meta.outputs]
        self.classes = [str(c) for c in meta.classes] if meta.classes is not None else None
        self.score_key = "probabilities" if "probabilities" in self.outputs else "scores"

    def feeds(self, instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """One [N, 1] tensor per ONNX input: float32 (None becomes NaN) or str (None: "")."""
        feeds: dict[str, np.ndarray] = {}
        for name, numeric, onnx_input in self.features:
            if numeric:  # numpy turns None into NaN, Kiln's "missing"
                feeds[onnx_input] = np.array([[row[name]] for row in instances], dtype=np.float32)
            else:
                feeds[onnx_input] = np.array(
                    [[row[name] if row[name] is not None else ""] for row in instances],
                    dtype=object,
                )
        return feeds

    def answer(self, results: list[Any]) -> dict[str, Any]:
        outputs = dict(zip(self.outputs, results, strict=True))
        answer: dict[str, Any] = {"model": self.name, "version": self.version}
        if self.classes is None:
            answer["predictions"] = outputs["prediction"].reshape(-1).tolist()
            return answer
        answer["predictions"] = outputs["label"].tolist()
        answer[self.score_key] = [
            dict(zip(self.classes, row, strict=True)) for row in outputs[self.score_key].tolist()
        ]
        return answer


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    dirs = os.environ["KILN_BENCH_MODEL_DIRS"].split(os.pathsep)
    models = [_Model(Path(d)) for d in dirs if d]
    app.state.models = {m.name: m for m in models}
    yield


app = FastAPI(title="plain FastAPI + ONNX Runtime (Kiln benchmark reference)", lifespan=_lifespan)
_ok = orjson.dumps({"ok": True})


@app.post("/predict/{name}")
async def predict(name: str, request: Request) -> Response:
    """Predict on the instances of the body; ONNX Runtime runs inline."""
    model: _Model | None = request.app.state.models.get(name)
    if model is None:
        return Response(orjson.dumps({"error": f"no model {name}"}), 404, media_type=JSON)
    payload = orjson.loads(await request.body())
    results = model.session.run(model.outputs, model.feeds(payload["instances"]))
    return Response(orjson.dumps(model.answer(results)), media_type=JSON)


@app.post("/noop")
async def noop(request: Request) -> Response:
    """Read the body and answer ``{"ok": true}``."""
    await request.body()
    return Response(_ok, media_type=JSON)
