"""Peer for the serving benchmark: plain FastAPI + uvicorn over the scikit-learn pipeline.

What a service written by hand looks like without Kiln: the pickled pipeline is loaded at
import, a pydantic model reads the body and ``predict_proba`` runs in FastAPI's thread pool
(a plain ``def`` endpoint)::

    KILN_BENCH_SKLEARN_MODEL=build/bench-models/breast-cancer.joblib \\
        build/bench-venvs/fastapi-sklearn/bin/uvicorn --app-dir bench/peers \\
        fastapi_sklearn:app --port 8002 --no-access-log

``POST /predict`` takes ``{"instances": [{feature: value, ...}, ...]}`` and answers
``{"predictions": [...], "probabilities": [{class: p, ...}, ...]}``.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

__all__ = ["app"]

_model = joblib.load(os.environ["KILN_BENCH_SKLEARN_MODEL"])
_classes = [str(c) for c in _model.classes_]

app = FastAPI(title="plain FastAPI + scikit-learn (Kiln benchmark peer)")


class Instances(BaseModel):
    instances: list[dict[str, float | str | None]]


@app.post("/predict")
def predict(payload: Instances) -> dict[str, Any]:
    """Predict on the instances of the body."""
    frame = pd.DataFrame(payload.instances)
    probabilities = _model.predict_proba(frame)
    labels = [_classes[i] for i in probabilities.argmax(axis=1)]
    return {
        "predictions": labels,
        "probabilities": [dict(zip(_classes, row, strict=True)) for row in probabilities.tolist()],
    }
