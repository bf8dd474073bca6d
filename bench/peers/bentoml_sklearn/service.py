"""Peer for the serving benchmark: BentoML serving the pickled scikit-learn pipeline.

What a BentoML user writes without ONNX: a ``@bentoml.service`` class that loads the pipeline
with joblib and an ``@bentoml.api`` that calls ``predict_proba``::

    KILN_BENCH_SKLEARN_MODEL=build/bench-models/breast-cancer.joblib \\
        build/bench-venvs/bentoml-sklearn/bin/bentoml serve service:SklearnPeer \\
        --working-dir bench/peers/bentoml_sklearn --port 3001

``POST /predict`` takes ``{"instances": [{feature: value, ...}, ...]}`` and answers
``{"predictions": [...], "probabilities": [{class: p, ...}, ...]}``.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import joblib
import pandas as pd


@bentoml.service(workers=1)
class SklearnPeer:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["KILN_BENCH_SKLEARN_MODEL"])
        self.classes = [str(c) for c in self.model.classes_]

    @bentoml.api
    def predict(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        """Predict on the instances of the body."""
        probabilities = self.model.predict_proba(pd.DataFrame(instances))
        return {
            "predictions": [self.classes[i] for i in probabilities.argmax(axis=1)],
            "probabilities": [
                dict(zip(self.classes, row, strict=True)) for row in probabilities.tolist()
            ],
        }
