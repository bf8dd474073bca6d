"""Exporting a fitted pipeline to ONNX, and proving that ONNX Runtime answers like it.

Inputs: one tensor per feature, shape ``[N, 1]``: float32 for numeric features, string for
categorical and text (a missing value is NaN, or "" for strings). Outputs:

- classifiers: ``label`` ``[N]`` (int64 or string, the class as in the training data) and
  ``probabilities`` ``[N, n_classes]`` float32 in ``classes`` order (no ZipMap) -- or, for
  LinearSVC with ``probabilities: scores``, ``scores`` ``[N, n_classes]`` decision scores;
- regressors: ``prediction`` ``[N, 1]`` float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import FeatureKind, Output, Task, Verification
from kiln.errors import TrainingError, VerificationError
from training.estimators import ScoreKind
from training.evaluate import scores_of

__all__ = ["Exported", "export_onnx", "onnx_feeds", "verify"]

_OUTPUT_TEXT = {
    "label": "predicted class, as in the training data",
    "probabilities": "probability of each class, columns in `classes` order",
    "scores": "decision score of each class (not probabilities), columns in `classes` order",
    "prediction": "predicted value",
}


@dataclass(frozen=True)
class Exported:
    onnx: bytes
    inputs: dict[str, str]  # feature name -> ONNX input name
    outputs: list[Output]
    nodes: dict[str, int]  # operator domain -> node count


def onnx_feeds(
    X: pd.DataFrame, features: list[tuple[str, FeatureKind]], inputs: dict[str, str]
) -> dict[str, np.ndarray]:
    """The ONNX Runtime input dict for a typed feature frame."""
    return {
        inputs[name]: X[[name]].to_numpy(np.float32 if kind is FeatureKind.numeric else object)
        for name, kind in features
    }


def export_onnx(
    pipeline: Any,
    features: list[tuple[str, FeatureKind]],
    task: Task,
    score_kind: ScoreKind,
    opset: dict[str, int],
) -> Exported:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer

    initial = [
        (
            name,
            FloatTensorType([None, 1])
            if kind is FeatureKind.numeric
            else StringTensorType([None, 1]),
        )
        for name, kind in features
    ]
    if task is Task.classification:
        classes = list(pipeline.classes_)
        label_type = (
            Int64TensorType([None])
            if np.issubdtype(np.asarray(classes).dtype, np.integer)
            else StringTensorType([None])
        )
        final = [("label", label_type), (score_kind, FloatTensorType([None, len(classes)]))]
        # No ZipMap: a plain [N, n_classes] tensor. LinearSVC (scores) has no ZipMap option,
        # and without an option of its own skl2onnx gives it one and fails; raw_scores makes
        # it output [-s, s] for two classes, one column per class like the others.
        options: dict[Any, Any] = (
            {id(pipeline.named_steps["estimator"]): {"raw_scores": True}}
            if score_kind == "scores"
            else {id(pipeline): {"zipmap": False}}
        )
    else:
        final = [("prediction", FloatTensorType([None, 1]))]
        options = {}
    options[TfidfVectorizer] = {"locale": "C.UTF-8"}
    try:
        model = convert_sklearn(
            pipeline, initial_types=initial, final_types=final, target_opset=opset, options=options
        )
    except Exception as exc:  # skl2onnx raises many types; all mean "cannot convert"
        raise TrainingError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    graph_inputs = [i.name for i in model.graph.input]
    if len(graph_inputs) != len(features):
        raise TrainingError(f"ONNX model has inputs {graph_inputs}, expected {len(features)}")
    elem = {1: "float32", 7: "int64", 8: "string"}
    outputs = []
    for out in model.graph.output:
        tensor = out.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        outputs.append(
            Output(
                name=out.name,
                dtype=elem.get(tensor.elem_type, str(tensor.elem_type)),
                shape=dims,
                description=_OUTPUT_TEXT[out.name],
            )
        )
    inputs = {name: graph for (name, _), graph in zip(features, graph_inputs, strict=True)}
    nodes: dict[str, int] = {}
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        nodes[domain] = nodes.get(domain, 0) + 1
    return Exported(model.SerializeToString(), inputs, outputs, dict(sorted(nodes.items())))


def _worst_rows(
    index: pd.Index,
    ref: np.ndarray,
    got: np.ndarray,
    labels: tuple[np.ndarray, np.ndarray] | None,
    limit: int,
) -> str:
    diff = np.abs(got - ref).max(axis=1)
    flipped = labels[0] != labels[1].astype(labels[0].dtype) if labels is not None else False
    order = np.argsort(-np.where(flipped, np.inf, diff), kind="stable")[:limit]  # flips first
    lines = [f"  {'row':>8}  {'|diff|':>10}  scikit-learn -> onnx"]
    for i in order:
        label = f"   label {labels[0][i]!r} -> {labels[1][i]!r}" if labels is not None else ""
        ref_text = np.array2string(ref[i], precision=6)
        got_text = np.array2string(got[i], precision=6)
        lines.append(f"  {index[i]!s:>8}  {diff[i]:10.3g}  {ref_text} -> {got_text}{label}")
    return "\n".join(lines)


def verify(
    name: str,
    pipeline: Any,
    exported: Exported,
    X: pd.DataFrame,
    features: list[tuple[str, FeatureKind]],
    task: Task,
    *,
    atol: float,
    rtol: float,
    reason: str | None = None,
    worst: int = 5,
) -> Verification:
    """Run the ONNX model on ``X`` with ONNX Runtime and compare with scikit-learn, row by row.

    Raises :class:`VerificationError`, showing the worst rows, when a label differs or a
    score/output is outside ``atol + rtol * |scikit-learn|``.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
        results = session.run(None, onnx_feeds(X, features, exported.inputs))
    except Exception as exc:
        raise TrainingError(f"ONNX Runtime could not run the exported model: {exc}") from exc
    if task is Task.classification:
        got_labels, got = np.asarray(results[0]), np.asarray(results[1], dtype=np.float64)
        ref_labels = np.asarray(pipeline.predict(X))
        ref = scores_of(pipeline, X)
        assert ref is not None
        mismatched = int((got_labels.astype(ref_labels.dtype) != ref_labels).sum())
        labels: tuple[np.ndarray, np.ndarray] | None = (ref_labels, got_labels)
    else:
        got = np.asarray(results[0], dtype=np.float64).reshape(-1, 1)
        ref = np.asarray(pipeline.predict(X), dtype=np.float64).reshape(-1, 1)
        mismatched, labels = 0, None
    if got.shape != ref.shape:
        raise TrainingError(f"ONNX output shape {got.shape} differs from scikit-learn {ref.shape}")
    diff = np.abs(got - ref)
    within = bool((diff <= atol + rtol * np.abs(ref)).all())
    result = Verification(
        rows=len(X),
        label_mismatches=mismatched if task is Task.classification else None,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        atol=atol,
        rtol=rtol,
        tolerance_reason=reason,
        passed=within and mismatched == 0,
    )
    if not result.passed:
        summary = (
            f"{mismatched} of {len(X)} labels differ, " if mismatched else ""
        ) + f"max |diff| {result.max_abs_diff:.3g} vs atol {atol:g} + rtol {rtol:g}*|value|"
        raise VerificationError(name, summary, _worst_rows(X.index, ref, got, labels, worst))
    return result
