"""ONNX Runtime answers like scikit-learn, for every estimator and family Kiln exports.

Each case fits a real pipeline (imputation, scaling, one-hot encoding, TF-IDF) on data with
missing values and categoricals, exports it, and compares the two runtimes on every holdout
row: labels equal, probabilities/scores/predictions within atol 1e-4 + rtol 1e-6. Two
paths: the spec's pipeline for every estimator the spec accepts (``ESTIMATORS``), and a
user's own pipeline per family, fitted with scikit-learn alone and exported with
``export_model`` (``USER_FAMILIES``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from kiln.artifact import Task
from tests.conftest import SMS, mixed_frame
from training.estimators import ESTIMATORS, score_kind
from training.evaluate import scores_of
from training.export import export_onnx, onnx_feeds, verify
from training.pipeline import build_pipeline
from training.run import load_checked, split
from training.spec import DEFAULT_ATOL, DEFAULT_RTOL, parse_spec

pytestmark = pytest.mark.integration

FEATURES = {
    "size cm": "numeric",
    "weight": "numeric",
    "count": "numeric",
    "colour": "categorical",
    "shop": "categorical",
}
SMALL = {  # keep the forests and boosters small: the point is conversion, not accuracy
    "RandomForestClassifier": {"n_estimators": 30},
    "RandomForestRegressor": {"n_estimators": 30},
    "ExtraTreesClassifier": {"n_estimators": 30},
    "ExtraTreesRegressor": {"n_estimators": 30},
    "GradientBoostingClassifier": {"n_estimators": 40},
    "GradientBoostingRegressor": {"n_estimators": 40},
    "MLPClassifier": {"hidden_layer_sizes": [16], "max_iter": 300},
    "MLPRegressor": {"hidden_layer_sizes": [16], "max_iter": 300},
    "HistGradientBoostingClassifier": {"max_iter": 30},
    "HistGradientBoostingRegressor": {"max_iter": 30},
    "XGBClassifier": {"n_estimators": 30},
    "XGBRegressor": {"n_estimators": 30},
    "LGBMClassifier": {"n_estimators": 30},
    "LGBMRegressor": {"n_estimators": 30},
}

CASES: list[Any] = []
for _name, _info in ESTIMATORS.items():
    if _info.task is Task.regression:
        CASES.append(pytest.param(_name, 0, None, id=f"{_name}"))
        continue
    for _classes in (2, 3):
        CASES.append(pytest.param(_name, _classes, None, id=f"{_name}-{_classes}class"))
CASES.append(pytest.param("LinearSVC", 2, "scores", id="LinearSVC-scores-2class"))
CASES.append(pytest.param("LinearSVC", 3, "scores", id="LinearSVC-scores-3class"))


def _fit_export(spec_raw: dict[str, Any], data: Path) -> tuple[Any, Any, Any, Any]:
    spec = parse_spec(spec_raw)
    dataset = load_checked(spec, data.parent, [str(data)])
    parts = split(spec, dataset)
    pipeline = build_pipeline(spec, dataset.features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny data is not the subject
        pipeline.fit(parts.X_train, parts.y_train)
    kind = score_kind(ESTIMATORS[spec.estimator.type], spec.estimator.probabilities)
    exported = export_onnx(pipeline, dataset.features, spec.task, kind, {"": 18, "ai.onnx.ml": 3})
    return spec, dataset, parts, (pipeline, exported)


def _assert_agree(spec: Any, dataset: Any, parts: Any, pipeline: Any, exported: Any) -> None:
    session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
    got = session.run(None, onnx_feeds(parts.X_test, dataset.features, exported.inputs))
    if spec.task is Task.classification:
        assert [o.name for o in session.get_outputs()] == [
            "label",
            score_kind(ESTIMATORS[spec.estimator.type], spec.estimator.probabilities),
        ]
        expected_labels = pipeline.predict(parts.X_test)
        assert got[0].tolist() == expected_labels.tolist()
        np.testing.assert_allclose(
            got[1], scores_of(pipeline, parts.X_test), atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL
        )
    else:
        assert [o.name for o in session.get_outputs()] == ["prediction"]
        np.testing.assert_allclose(
            got[0].ravel(), pipeline.predict(parts.X_test), atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL
        )
    # Kiln's own verifier reaches the same verdict
    result = verify(
        spec.name,
        pipeline,
        exported,
        parts.X_test,
        dataset.features,
        spec.task,
        atol=DEFAULT_ATOL,
        rtol=DEFAULT_RTOL,
    )
    assert result.passed and result.rows == len(parts.X_test)


@pytest.mark.parametrize(("estimator", "classes", "probabilities"), CASES)
def test_onnx_matches_sklearn_on_mixed_data(
    tmp_path: Path, estimator: str, classes: int, probabilities: str | None
) -> None:
    data = tmp_path / "mixed.csv"
    mixed_frame(rows=400, classes=classes).to_csv(data, index=False)
    info = ESTIMATORS[estimator]
    raw = {
        "name": "parity",
        "task": info.task.value,
        "target": "target",
        "features": FEATURES,
        "estimator": {"type": estimator, "params": SMALL.get(estimator, {})},
        "evaluation": {"holdout": 0.3, "seed": 1},
    }
    if probabilities:
        raw["estimator"]["probabilities"] = probabilities
    spec, dataset, parts, (pipeline, exported) = _fit_export(raw, data)
    assert dataset.X.isna().any().any() or (dataset.X == "").any().any()  # missing values seen
    assert list(exported.inputs) == list(FEATURES)
    assert exported.inputs["size cm"] == "size_cm"  # ONNX names are sanitised, mapped back
    _assert_agree(spec, dataset, parts, pipeline, exported)


@pytest.mark.skipif(not SMS.is_dir(), reason="needs ../shared/data/sms")
@pytest.mark.parametrize(
    ("estimator", "text"),
    [
        ("LogisticRegression", {}),
        ("LinearSVC", {"stop_words": "english", "min_df": 2}),
        ("LogisticRegression", {"max_features": 2000, "binary": True, "lowercase": False}),
    ],
    ids=["tfidf-logreg", "tfidf-linearsvc-stopwords", "tfidf-logreg-binary-capped"],
)
def test_text_pipeline_matches_sklearn(estimator: str, text: dict[str, Any]) -> None:
    raw = {
        "name": "sms",
        "task": "classification",
        "data": {"format": "tsv", "header": False, "columns": ["label", "text"]},
        "target": "label",
        "features": {"text": "text"},
        "text": text,
        "estimator": {"type": estimator},
        "evaluation": {"holdout": 0.25, "seed": 0},
    }
    spec, dataset, parts, (pipeline, exported) = _fit_export(raw, SMS / "valid-data.tsv")
    _assert_agree(spec, dataset, parts, pipeline, exported)
