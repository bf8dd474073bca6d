"""Exporting a fitted pipeline to ONNX, and proving that ONNX Runtime answers like it.

Inputs: one tensor per feature, shape ``[N, 1]``: float32 for numeric features, string for
categorical and text (a missing value is NaN, or "" for strings). Outputs:

- classifiers: ``label`` ``[N]`` (int64 or string, the class as in the training data) and
  ``probabilities`` ``[N, n_classes]`` float32 in ``classes`` order (no ZipMap) -- or, for
  LinearSVC with ``probabilities: scores``, ``scores`` ``[N, n_classes]`` decision scores;
- regressors: ``prediction`` ``[N, 1]`` float32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import FeatureKind, Output, Task, Verification
from kiln.errors import TrainingError, VerificationError
from training.estimators import ScoreKind
from training.evaluate import scores_of

__all__ = [
    "Exported",
    "export_model",
    "export_onnx",
    "final_estimator",
    "model_score_kind",
    "onnx_feeds",
    "verify",
]

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
    """A spec pipeline's ONNX model: :func:`export_model`, checked against the spec's kind."""
    exported = export_model(pipeline, features, task, opset)
    if task is Task.classification and exported.outputs[1].name != score_kind:
        raise TrainingError(
            f"the model outputs {exported.outputs[1].name}, the spec expects {score_kind}"
        )
    return exported


def model_score_kind(model: Any, task: Task) -> ScoreKind:
    """What a model's ONNX scores are: ``probabilities`` where the final estimator has
    ``predict_proba``, else ``scores`` (``decision_function``); ``prediction`` for regressors.
    """
    if task is Task.regression:
        return "prediction"
    if hasattr(model, "predict_proba"):
        return "probabilities"
    if hasattr(model, "decision_function"):
        return "scores"
    raise TrainingError(
        f"{type(final_estimator(model)).__name__} has neither predict_proba nor "
        "decision_function: Kiln serves a classifier's per-class scores beside its labels"
    )


def final_estimator(model: Any) -> Any:
    """The last step of a (nested) Pipeline, or the model itself."""
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[-1][1]
    return model


def _first_step(model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[0][1]
    return model


def _allowed_options(estimator: Any) -> dict[str, Any]:
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    alias = sklearn_operator_name_map.get(type(estimator))
    if alias is None:
        return {}
    try:
        return get_converter(alias).get_allowed_options() or {}
    except ValueError:
        return {}


def _options(model: Any, kind: ScoreKind) -> dict[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    options: dict[Any, Any] = {TfidfVectorizer: {"locale": "C.UTF-8"}}
    if kind == "prediction":
        return options
    # No ZipMap: a plain [N, n_classes] tensor. A decision-function classifier (LinearSVC)
    # outputs raw scores: [-s, s] for two classes, one column per class like the others.
    final = final_estimator(model)
    allowed = _allowed_options(final)
    own: dict[str, Any] = {}
    if "zipmap" in allowed:
        own["zipmap"] = False
    if kind == "scores" and "raw_scores" in allowed:
        own["raw_scores"] = True
    options[id(final)] = own
    if model is not final and kind == "probabilities":
        options[id(model)] = {"zipmap": False}
    return options


def _columns(model: Any, features: list[tuple[str, FeatureKind]]) -> list[str]:
    """The feature names in the order the model takes them (its ``feature_names_in_``)."""
    names = [name for name, _ in features]
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None:
        return names
    fitted = [str(c) for c in fitted]
    if sorted(fitted) != sorted(names):
        missing = [c for c in fitted if c not in names]
        extra = [c for c in names if c not in fitted]
        raise TrainingError(
            "the features do not match the columns the model was fitted on"
            + (f"; missing: {', '.join(map(repr, missing))}" if missing else "")
            + (f"; not used by the model: {', '.join(map(repr, extra))}" if extra else "")
        )
    return fitted


def _onnx_type(kind: FeatureKind, width: int = 1) -> Any:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if kind is FeatureKind.numeric:
        return FloatTensorType([None, width])
    return StringTensorType([None, width])


def _concatenated_input(
    onnx_model: Any, inner: str, features: list[str], order: list[str]
) -> dict[str, str]:
    """Replace the graph input ``inner`` [N, k] by one [N, 1] input per feature.

    The inputs come in ``features`` order; a Concat joins them in ``order``, the model's.
    Returns feature name -> ONNX input name.
    """
    from onnx import helper

    graph = onnx_model.graph
    (old,) = [i for i in graph.input if i.name == inner]
    elem = old.type.tensor_type.elem_type
    names: dict[str, str] = {}
    for name in features:
        onnx_name = base = re.sub(r"\W", "_", name)  # skl2onnx's rule for input names
        while onnx_name in names.values() or onnx_name == inner:
            onnx_name = f"{onnx_name}_"
        names[name] = onnx_name if base else f"input_{len(names)}"
    graph.input.remove(old)
    graph.input.extend(helper.make_tensor_value_info(names[n], elem, [None, 1]) for n in features)
    concat = helper.make_node("Concat", [names[n] for n in order], [inner], axis=1, name=inner)
    graph.node.insert(0, concat)
    return names


def export_model(
    model: Any,
    features: list[tuple[str, FeatureKind]],
    task: Task,
    opset: dict[str, int],
) -> Exported:
    """Convert any fitted scikit-learn estimator or Pipeline to Kiln's ONNX contract.

    ``features`` are the model's input columns (name, kind) in the order the ONNX inputs
    take; ``task`` says which outputs it gets. The model takes a DataFrame with those
    columns: a model whose first step is a ColumnTransformer picks its columns by name; any
    other model (a bare estimator, a Pipeline of scalers) takes them concatenated into the
    one array it was fitted on, in its ``feature_names_in_`` order, or in the given order
    for a model fitted on a plain array.

    The ONNX model has one ``[N, 1]`` input per feature (float32 for numeric, string for
    categorical and text) and the outputs of the module docstring: ``label`` and
    ``probabilities`` (the final estimator has ``predict_proba``) or ``scores``
    (``decision_function`` only), no ZipMap, for classifiers; ``prediction`` for regressors.

    Raises :class:`TrainingError` when the model cannot be converted.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    from training.converters import custom_converters, register_converters

    register_converters()
    kind = model_score_kind(model, task)
    order = _columns(model, features)
    kinds = dict(features)
    from sklearn.compose import ColumnTransformer

    by_name = isinstance(_first_step(model), ColumnTransformer)
    inner = "kiln_features"
    if by_name:
        initial = [(name, _onnx_type(kinds[name])) for name, _ in features]
    else:
        distinct = {kinds[name].dtype for name in order}
        if len(distinct) > 1:
            raise TrainingError(
                "the model takes its features as one array, so they must be all numeric or "
                "all strings; put a ColumnTransformer first to give columns their own types"
            )
        initial = [(inner, _onnx_type(kinds[order[0]], len(order)))]
    if task is Task.classification:
        classes = list(model.classes_)
        label_type = (
            Int64TensorType([None])
            if np.issubdtype(np.asarray(classes).dtype, np.integer)
            else StringTensorType([None])
        )
        final = [("label", label_type), (kind, FloatTensorType([None, len(classes)]))]
    else:
        final = [("prediction", FloatTensorType([None, 1]))]
    try:
        onnx_model = convert_sklearn(
            model,
            initial_types=initial,
            final_types=final,
            target_opset=opset,
            options=_options(model, kind),
            custom_conversion_functions=custom_converters(),
        )
    except Exception as exc:  # skl2onnx raises many types; all mean "cannot convert"
        raise TrainingError(f"skl2onnx could not convert the model: {_short(exc)}") from exc
    if not by_name:
        _concatenated_input(onnx_model, inner, [n for n, _ in features], order)
    return _exported(onnx_model, features)


def _short(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exported(onnx_model: Any, features: list[tuple[str, FeatureKind]]) -> Exported:
    graph_inputs = [i.name for i in onnx_model.graph.input]
    if len(graph_inputs) != len(features):
        raise TrainingError(f"ONNX model has inputs {graph_inputs}, expected {len(features)}")
    elem = {1: "float32", 7: "int64", 8: "string"}
    outputs = []
    for out in onnx_model.graph.output:
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
    for node in onnx_model.graph.node:
        domain = node.domain or "ai.onnx"
        nodes[domain] = nodes.get(domain, 0) + 1
    return Exported(onnx_model.SerializeToString(), inputs, outputs, dict(sorted(nodes.items())))


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
