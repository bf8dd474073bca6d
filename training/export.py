"""Exporting a fitted model to ONNX, and proving that ONNX Runtime answers like it.

Inputs: one tensor per feature, shape ``[N, 1]``: float32 for numeric features, string for
categorical and text (a missing value is NaN, or "" for strings). Outputs:

- classifiers: ``label`` ``[N]`` (int64 or string, the class as in the training data) and
  ``probabilities`` ``[N, n_classes]`` float32 in ``classes`` order (no ZipMap) -- or, for
  a classifier without ``predict_proba`` (LinearSVC with ``probabilities: scores``),
  ``scores`` ``[N, n_classes]`` decision scores;
- regressors: ``prediction`` ``[N, 1]`` float32.

:func:`export_model` converts any fitted scikit-learn estimator or Pipeline (a spec's, or
one a user fitted); :func:`verify` runs both on every sample row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import FeatureKind, Output, Task, Verification
from kiln.errors import TrainingError, VerificationError
from kiln.values import MISSING_STRING
from training.estimators import ScoreKind
from training.evaluate import scores_of

__all__ = [
    "Exported",
    "export_model",
    "export_onnx",
    "final_estimator",
    "model_input",
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
_INNER = "kiln_features"  # the one array a model without a ColumnTransformer in front takes


@dataclass(frozen=True)
class Exported:
    onnx: bytes
    inputs: dict[str, str]  # feature name -> ONNX input name
    outputs: list[Output]
    nodes: dict[str, int]  # operator domain -> node count
    missing_as_nan: bool = False  # the model takes a missing string as NaN (export_model)


def onnx_feeds(
    X: pd.DataFrame, features: list[tuple[str, FeatureKind]], inputs: dict[str, str]
) -> dict[str, np.ndarray]:
    """The ONNX Runtime input dict for a feature frame: a missing string becomes ""."""
    feeds = {}
    for name, kind in features:
        if kind is FeatureKind.numeric:
            feeds[inputs[name]] = X[[name]].to_numpy(np.float32)
        else:
            column = X[name].astype(object).where(X[name].notna(), MISSING_STRING)
            feeds[inputs[name]] = column.to_numpy(object).reshape(-1, 1)
    return feeds


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


def final_estimator(model: Any) -> Any:
    """The last step of a (nested) Pipeline, or the model itself."""
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[-1][1]
    return model


def model_score_kind(model: Any, task: Task) -> ScoreKind:
    """What the ONNX model's second output is: ``probabilities`` where the final estimator
    has ``predict_proba``, else ``scores`` (``decision_function``); regressors: ``prediction``.
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


def export_model(
    model: Any,
    features: list[tuple[str, FeatureKind]],
    task: Task,
    opset: dict[str, int],
) -> Exported:
    """Convert a fitted scikit-learn estimator or Pipeline to the ONNX model Kiln serves.

    ``model``: any fitted estimator whose steps skl2onnx converts, including XGBoost and
    LightGBM (:mod:`training.converters`). ``features``: its input columns (name, kind), in
    the order the ONNX inputs take; ``task``: which outputs it gets; ``opset``: the target
    opsets by domain.

    Columns. A model whose first step is a ColumnTransformer takes a DataFrame and picks its
    columns by name. Any other model (a bare estimator, a Pipeline of a scaler and an
    estimator) takes one array: the ONNX model concatenates its inputs into it in the
    model's ``feature_names_in_`` order, or in the order of ``features`` for a model fitted
    on a plain array (those features must then be all numeric or all strings).

    Contract (the module docstring): one ``[N, 1]`` input per feature (float32 for numeric,
    string for categorical and text); for classifiers ``label`` and ``probabilities`` (the
    final estimator has ``predict_proba``) or ``scores`` (it has only
    ``decision_function``), without ZipMap; for regressors ``prediction``.

    Numbers. Served values are float32. Scalers (Standard, Robust, MaxAbs, MinMax) are
    computed in float64 with their fitted float64 parameters, a numeric SimpleImputer right
    before one imputing its float64 statistics, so that a tree after them splits the value
    scikit-learn computes. Trees compare in float32, as skl2onnx converts them.

    Missing strings. Kiln serves a missing categorical or text value as ``""``
    (:data:`kiln.values.MISSING_STRING`). If the model learned NaN as the missing string
    (a SimpleImputer with ``missing_values=NaN`` fitted on strings, or a OneHotEncoder or
    OrdinalEncoder with NaN among its categories), the ONNX graph sends ``""`` where
    scikit-learn sends NaN (the imputer fills ``""``, the encoders' NaN category is ``""``)
    and :func:`verify` hands the model NaN where a categorical column holds ``""``
    (``Exported.missing_as_nan``). Otherwise ``""`` reaches the model as ``""``, as in
    Kiln's spec pipelines, which learn it as a category. Refused, because no served value
    could mean the same: a model that learned NaN on one step and ``""`` as a value on
    another, a string category ``'nan'`` beside NaN, and an OrdinalEncoder that encodes NaN
    as NaN. Text columns are never mapped (TfidfVectorizer does not take NaN).

    Refusals. Before skl2onnx is called, the first step that cannot be converted
    faithfully stops the export with a :class:`TrainingError` naming its place, such as
    ``preprocess > num > spline: SplineTransformer``, the reason and what to do
    (:func:`training.steps.refusal`): no converter; HistGradientBoosting with native
    categorical support; TF-IDF options that skl2onnx converts into other answers; a
    FunctionTransformer with a function; an unfitted model. A conversion that skl2onnx
    fails on anyway is a TrainingError too.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    from training.converters import custom_converters, register_converters
    from training.steps import missing_strings, refusal

    register_converters()
    problem = refusal(model)
    if problem is not None:
        raise TrainingError(f"cannot export the model: {problem}")
    missing, _ = missing_strings(model)
    kind = model_score_kind(model, task)
    order = [name for name, _ in _columns(model, features)]
    kinds = dict(features)
    by_name = _takes_columns(model)
    if by_name:
        initial = [(name, _onnx_type(kinds[name])) for name, _ in features]
    else:
        if len({kinds[name].dtype for name in order}) > 1:
            raise TrainingError(
                "cannot export the model: it takes its features as one array, so they must "
                "be all numeric or all strings; put a ColumnTransformer first to give each "
                "column its own type"
            )
        initial = [(_INNER, _onnx_type(kinds[order[0]], len(order)))]
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
            custom_conversion_functions=custom_converters(model, missing.as_nan),
        )
    except Exception as exc:  # skl2onnx raises many types; all mean "cannot convert"
        raise TrainingError(f"skl2onnx could not convert the model: {_short(exc)}") from exc
    if not by_name:
        _concatenated_input(onnx_model, [n for n, _ in features], order)
    return _exported(onnx_model, features, missing.as_nan)


def model_input(
    model: Any, X: pd.DataFrame, features: list[tuple[str, FeatureKind]], missing_as_nan: bool
) -> Any:
    """The sample as the model takes it, holding what Kiln serves.

    Its columns (a DataFrame for a model that knows column names, else the array of
    ``features`` in order); with ``missing_as_nan``, NaN where a categorical column has
    ``""`` (see :func:`export_model`).
    """
    frame = X
    if missing_as_nan:
        frame = X.copy()
        for name, kind in features:
            if kind is FeatureKind.categorical:
                column = frame[name].astype(object)
                frame[name] = column.where(column.notna() & (column != MISSING_STRING), np.nan)
    if _takes_columns(model):
        return frame
    pairs = _columns(model, features)
    columns = frame[[name for name, _ in pairs]]
    if getattr(model, "feature_names_in_", None) is not None:
        return columns.set_axis([column for _, column in pairs], axis=1)
    return columns.to_numpy()


def _first_step(model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[0][1]
    return model


def _takes_columns(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    return isinstance(_first_step(model), ColumnTransformer)


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


def _columns(model: Any, features: list[tuple[str, FeatureKind]]) -> list[tuple[str, str]]:
    """(feature, column the model was fitted on), in the order the model takes them.

    The model's ``feature_names_in_`` decide the order; LightGBM writes them with ``_`` for
    spaces and punctuation, so a feature matches its column under that rule too.
    """
    names = [name for name, _ in features]
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None:
        return [(name, name) for name in names]
    fitted = [str(c) for c in fitted]
    if sorted(fitted) == sorted(names):
        return [(name, name) for name in fitted]
    plain = {re.sub(r"\W", "_", name): name for name in names}
    if len(plain) == len(names) and sorted(plain) == sorted(fitted):
        return [(plain[column], column) for column in fitted]
    missing = [c for c in fitted if c not in names]
    extra = [c for c in names if c not in fitted]
    raise TrainingError(
        "the features do not match the columns the model was fitted on"
        + (f"; missing: {', '.join(map(repr, missing))}" if missing else "")
        + (f"; not used by the model: {', '.join(map(repr, extra))}" if extra else "")
    )


def _onnx_type(kind: FeatureKind, width: int = 1) -> Any:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if kind is FeatureKind.numeric:
        return FloatTensorType([None, width])
    return StringTensorType([None, width])


def _concatenated_input(onnx_model: Any, features: list[str], order: list[str]) -> None:
    """Replace the graph's one [N, k] input by one [N, 1] input per feature.

    The inputs come in ``features`` order, named as skl2onnx names them (non-word
    characters become ``_``); a Concat joins them in ``order``, the model's.
    """
    from onnx import helper

    graph = onnx_model.graph
    (old,) = [i for i in graph.input if i.name == _INNER]
    elem = old.type.tensor_type.elem_type
    names: dict[str, str] = {}
    for name in features:
        onnx_name = re.sub(r"\W", "_", name) or "input"
        while onnx_name in names.values() or onnx_name == _INNER:
            onnx_name = f"{onnx_name}_"
        names[name] = onnx_name
    graph.input.remove(old)
    graph.input.extend(helper.make_tensor_value_info(names[n], elem, [None, 1]) for n in features)
    concat = helper.make_node("Concat", [names[n] for n in order], [_INNER], axis=1, name=_INNER)
    graph.node.insert(0, concat)


def _short(exc: BaseException, limit: int = 500) -> str:
    """An exception's first line, cut: skl2onnx puts whole tree ensembles in its messages."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exported(
    onnx_model: Any, features: list[tuple[str, FeatureKind]], missing_as_nan: bool
) -> Exported:
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
    return Exported(
        onnx_model.SerializeToString(),
        inputs,
        outputs,
        dict(sorted(nodes.items())),
        missing_as_nan,
    )


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


def _answers(model: Any, sample: Any, task: Task) -> tuple[np.ndarray | None, np.ndarray]:
    """scikit-learn's labels (classifiers) and scores or predictions, one row per row."""
    if task is Task.classification:
        scores = scores_of(model, sample)
        assert scores is not None
        return np.asarray(model.predict(sample)), np.asarray(scores, dtype=np.float64)
    return None, np.asarray(model.predict(sample), dtype=np.float64).reshape(-1, 1)


def _rows_agree(
    ref_labels: np.ndarray | None,
    ref: np.ndarray,
    got_labels: np.ndarray | None,
    got: np.ndarray,
    atol: float,
    rtol: float,
) -> np.ndarray:
    within = (np.abs(got - ref) <= atol + rtol * np.abs(ref)).all(axis=1)
    if ref_labels is None or got_labels is None:
        return within
    return within & (got_labels.astype(ref_labels.dtype) == ref_labels)


def _as_served(X: pd.DataFrame, features: list[tuple[str, FeatureKind]]) -> pd.DataFrame:
    """``X`` with its numbers rounded to float32, as the served model receives them."""
    served = X.copy()
    for name, kind in features:
        if kind is FeatureKind.numeric:
            served[name] = X[name].to_numpy(np.float32).astype(np.float64)
    return served


def _imputing_in_float32(model: Any) -> Any:
    """``model`` as the served graph computes it: ONNX's Imputer holds its fill values as
    float32, so a numeric SimpleImputer's statistics are rounded to float32 (a copy; the
    model itself when it has no such imputer). A median of 0.1234567891 fills a missing
    number with 0.12345679 when served, and a tree split between the two answers otherwise.
    """
    import copy

    from sklearn.impute import SimpleImputer

    from training.steps import walk

    def numeric_imputers(candidate: Any) -> list[SimpleImputer]:
        return [
            step.estimator
            for step in walk(candidate)
            if isinstance(step.estimator, SimpleImputer)
            and getattr(step.estimator, "statistics_", None) is not None
            and step.estimator.statistics_.dtype.kind == "f"
        ]

    if not numeric_imputers(model):
        return model
    served = copy.deepcopy(model)
    for imputer in numeric_imputers(served):
        imputer.statistics_ = imputer.statistics_.astype(np.float32).astype(np.float64)
    return served


def _scaled_trees(model: Any) -> str:
    """A hint for a failed verification of trees that split scaled values, else ""."""
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

    from training.steps import walk

    scalers = (StandardScaler, RobustScaler, MaxAbsScaler, MinMaxScaler)
    steps = [step.estimator for step in walk(model)]
    scaled = [type(s).__name__ for s in steps if isinstance(s, scalers)]
    families = ("Forest", "Trees", "GradientBoosting", "DecisionTree", "XGB", "LGBM")
    trees = any(family in type(s).__name__ for s in steps for family in families)
    if not (scaled and trees):
        return ""
    return (
        f"; the trees split values scaled by {scaled[0]}, at training values, and a number "
        "served as float32 then scaled can fall on the other side of one: trees need no "
        "scaling, so refit without the scaler"
    )


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

    ``X`` holds the features as Kiln serves them (a missing string is "" or NaN; both are
    served as ""). The model gets the same rows through :func:`model_input`, so a model that
    takes a missing string as NaN gets NaN there. Labels must agree on every row; scores and
    predictions within ``atol + rtol * |scikit-learn|``.

    Numbers reach the served model as float32: 12.385 arrives as 12.38500023. Where that
    rounding changes scikit-learn's own answer (a tree splitting, after a scaler, at exactly
    a value the row holds), the served model can only answer for the value it receives, so a
    row that disagrees with scikit-learn on ``X`` is judged again against scikit-learn on
    the float32 values, with a numeric imputer's fill values rounded to float32 as the ONNX
    Imputer holds them (:func:`_imputing_in_float32`). A conversion error disagrees with
    both.

    Raises :class:`VerificationError`, showing the worst rows, when a row agrees with
    neither.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
        results = session.run(None, onnx_feeds(X, features, exported.inputs))
    except Exception as exc:
        raise TrainingError(f"ONNX Runtime could not run the exported model: {exc}") from exc
    nan = exported.missing_as_nan
    ref_labels, ref = _answers(pipeline, model_input(pipeline, X, features, nan), task)
    if task is Task.classification:
        got_labels: np.ndarray | None = np.asarray(results[0])
        got = np.asarray(results[1], dtype=np.float64)
    else:
        got_labels, got = None, np.asarray(results[0], dtype=np.float64).reshape(-1, 1)
    if got.shape != ref.shape:
        raise TrainingError(f"ONNX output shape {got.shape} differs from scikit-learn {ref.shape}")
    agree = _rows_agree(ref_labels, ref, got_labels, got, atol, rtol)
    numeric = any(kind is FeatureKind.numeric for _, kind in features)
    if numeric and not agree.all():
        rows = np.flatnonzero(~agree)
        served = _as_served(X.iloc[rows], features)
        as_served = _imputing_in_float32(pipeline)
        labels32, ref32 = _answers(as_served, model_input(pipeline, served, features, nan), task)
        sub_labels = got_labels[rows] if got_labels is not None else None
        fixed = _rows_agree(labels32, ref32, sub_labels, got[rows], atol, rtol)
        ref[rows[fixed]] = ref32[fixed]
        if ref_labels is not None and labels32 is not None:
            ref_labels[rows[fixed]] = labels32[fixed]
        agree[rows[fixed]] = True
    diff = np.abs(got - ref)
    mismatched = 0
    labels: tuple[np.ndarray, np.ndarray] | None = None
    if ref_labels is not None and got_labels is not None:
        mismatched = int((got_labels.astype(ref_labels.dtype) != ref_labels).sum())
        labels = (ref_labels, got_labels)
    result = Verification(
        rows=len(X),
        label_mismatches=mismatched if task is Task.classification else None,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        atol=atol,
        rtol=rtol,
        tolerance_reason=reason,
        passed=bool(agree.all()),
    )
    if not result.passed:
        summary = (
            (f"{mismatched} of {len(X)} labels differ, " if mismatched else "")
            + f"max |diff| {result.max_abs_diff:.3g} vs atol {atol:g} + rtol {rtol:g}*|value|"
            + _scaled_trees(pipeline)
        )
        raise VerificationError(name, summary, _worst_rows(X.index, ref, got, labels, worst))
    return result
