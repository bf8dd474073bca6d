"""Train a spec's scikit-learn pipeline exactly as Kiln does and pickle it for the peers.

The serving benchmark's peers (bench/peers/) serve the scikit-learn pipeline itself, not
Kiln's ONNX export. This script rebuilds it from the same spec with Kiln's own helpers
(``load_checked``, ``build_pipeline``, ``split``: same data, same split, same seed), fits it,
checks that its ``predict_proba`` equals the ONNX model Kiln exported on the holdout (within
1e-4), and writes it with joblib::

    .venv/bin/python bench/peers/models.py                      # trains Kiln's model too
    .venv/bin/python bench/peers/models.py --model-dir DIR      # compare with this export

``DIR`` is a Kiln model version directory (``model.onnx`` and ``kiln.json``); without it the
script runs ``kiln train`` into a temporary ``BENTOML_HOME`` first. The pickle goes to
``build/bench-models/<spec name>.joblib`` unless ``--out`` says otherwise.

Next to it, for a model whose features are all numeric, goes its array twin
(``<name>.array.joblib``, ``array_path``): the same fitted pipeline made to take one float
array ``[N, n_features]``, columns in ``kiln.json``'s feature order, the request a tensor server
such as MLServer decodes with its default (numpy) codec. Kiln's pipelines select columns by
name, which only a DataFrame has; the twin selects the same columns by position, or, where one
block takes every column in order, is that block's fitted steps then the estimator, and drops
the fitted column-name checks (an array carries no names, and scikit-learn would warn on every
call). It is checked the same way, on the holdout as a float32 array.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make training/ and kiln/ importable
    sys.path.insert(0, str(REPO))

from kiln.artifact import FeatureKind, read_metadata  # noqa: E402
from training.pipeline import build_pipeline  # noqa: E402
from training.run import load_checked, split  # noqa: E402
from training.spec import load_spec  # noqa: E402

ATOL = 1e-4
ARRAY_SUFFIX = ".array.joblib"


def array_path(out: Path) -> Path:
    """Where the array twin of the pickle at ``out`` goes."""
    return out.with_suffix(ARRAY_SUFFIX)


def array_pipeline(pipeline: Any, names: list[str]) -> Any:
    """A copy of the fitted ``pipeline`` that takes a float array whose columns are ``names``
    (Kiln's pipelines: a ColumnTransformer selecting columns by name, then the estimator)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    twin = copy.deepcopy(pipeline)
    preprocess = twin.steps[0][1]
    if not isinstance(preprocess, ColumnTransformer):
        raise ValueError(f"the pipeline starts with {type(preprocess).__name__}, not a selector")
    position = {name: i for i, name in enumerate(names)}
    fitted = []
    for name, transformer, columns in preprocess.transformers_:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"{name}: columns {columns!r} are not a list of names")
        fitted.append((name, transformer, [position[c] for c in columns]))
        parts = transformer.steps if isinstance(transformer, Pipeline) else [(name, transformer)]
        for _, step in parts:  # fitted on a DataFrame: each call on an array would warn
            if hasattr(step, "feature_names_in_"):
                del step.feature_names_in_
    preprocess.transformers_ = fitted
    if len(fitted) == 1 and fitted[0][2] == list(range(len(names))):
        # one block over every column in order (all-numeric data): the selector only copies,
        # and costs more than the model on one row (0.7 of 1.0 ms for the logistic
        # regression); without it the pipeline is the one a user fitting arrays would have
        (_, transformer, _) = fitted[0]
        steps = transformer.steps if isinstance(transformer, Pipeline) else [("pre", transformer)]
        return Pipeline([*steps, *twin.steps[1:]])
    return twin


def kiln_train(spec_path: Path, home: Path) -> Path:
    """``kiln train`` into the store at ``home``; the new version's directory."""
    kiln = Path(sys.executable).parent / "kiln"
    env = {**os.environ, "BENTOML_HOME": str(home), "KILN_TRAIN_PROGRESS": "false"}
    subprocess.run([str(kiln), "train", str(spec_path)], cwd=REPO, env=env, check=True)
    name = load_spec(spec_path).name
    version = (home / "models" / name / "latest").read_text(encoding="utf-8").strip()
    return home / "models" / name / version


def onnx_probabilities(model_dir: Path, X: Any) -> tuple[np.ndarray, list[str]]:
    """Kiln's ONNX model on the rows of ``X``: (probabilities, class labels as strings)."""
    meta = read_metadata(model_dir)
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = {}
    for feature in meta.features:
        column = X[feature.name]
        if feature.kind is FeatureKind.numeric:
            feeds[feature.input] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
        else:
            feeds[feature.input] = column.fillna("").astype(str).to_numpy(object).reshape(-1, 1)
    outputs = [o.name for o in meta.outputs]
    key = "probabilities" if "probabilities" in outputs else "scores"
    (scores,) = session.run([key], feeds)
    return np.asarray(scores, dtype=np.float64), [str(c) for c in meta.classes or []]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spec", type=Path, default=REPO / "training" / "specs" / "breast-cancer.yaml"
    )
    parser.add_argument("--model-dir", type=Path, help="Kiln's exported version to compare with")
    parser.add_argument("--out", type=Path, help="the pickle (build/bench-models/<name>.joblib)")
    args = parser.parse_args(argv)

    spec_path = args.spec.resolve()
    spec = load_spec(spec_path)
    out = args.out or REPO / "build" / "bench-models" / f"{spec.name}.joblib"
    dataset = load_checked(spec, spec_path.parent)
    pipeline = build_pipeline(spec, dataset.features)
    parts = split(spec, dataset)
    pipeline.fit(parts.X_train, parts.y_train)

    home = None
    try:
        model_dir = args.model_dir
        if model_dir is None:
            home = Path(tempfile.mkdtemp(prefix="kiln-bench-models-"))
            model_dir = kiln_train(spec_path, home)
        expected, classes = onnx_probabilities(model_dir, parts.X_test)
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    got = pipeline.predict_proba(parts.X_test)
    order = [[str(c) for c in pipeline.classes_].index(c) for c in classes]
    diff = float(np.max(np.abs(got[:, order] - expected)))
    if diff > ATOL:
        print(f"error: predict_proba differs from Kiln's ONNX model by {diff:.2e}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out)
    print(
        f"{out}: {type(pipeline[-1]).__name__} pipeline; predict_proba matches Kiln's ONNX model "
        f"on {len(parts.X_test)} holdout rows (max |diff| {diff:.1e})"
    )
    features = read_metadata(model_dir).features
    if any(f.kind is not FeatureKind.numeric for f in features):
        print(f"{out.name}: not every feature is numeric: no array twin")
        return 0
    names = [f.name for f in features]
    twin = array_pipeline(pipeline, names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning here would be one on every served call
        got = twin.predict_proba(parts.X_test[names].to_numpy(dtype=np.float32))
    diff = float(np.max(np.abs(got[:, order] - expected)))
    if diff > ATOL:
        print(f"error: the array twin differs from the ONNX model by {diff:.2e}", file=sys.stderr)
        return 1
    joblib.dump(twin, array_path(out))
    print(f"{array_path(out)}: takes [N, {len(names)}] float arrays (max |diff| {diff:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
