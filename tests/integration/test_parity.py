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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from kiln.artifact import FeatureKind, Task
from tests.conftest import SMS, mixed_frame
from training.estimators import ESTIMATORS, score_kind
from training.evaluate import scores_of
from training.export import export_model, export_onnx, onnx_feeds, verify
from training.pipeline import build_pipeline
from training.run import load_checked, split
from training.spec import DEFAULT_ATOL, DEFAULT_RTOL, parse_spec

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting on one OpenMP thread: on a busy machine its threads wait on each
    other (a 30-tree fit took 4 s instead of 0.06 s); the answers are the same."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield


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


# --- a user's own pipeline, fitted with scikit-learn alone, exported with export_model ------

NUMERIC = ["size cm", "weight", "count"]
CATEGORICAL = ["colour", "shop"]
USER_FEATURES = [(n, FeatureKind.numeric) for n in NUMERIC] + [
    (n, FeatureKind.categorical) for n in CATEGORICAL
]
OPSET = {"": 18, "ai.onnx.ml": 3}


def _xgb_classifier() -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=30, n_jobs=1, random_state=0)


def _xgb_regressor() -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(n_estimators=30, n_jobs=1, random_state=0)


def _lgbm_classifier() -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=30, n_jobs=1, random_state=0, verbose=-1)


def _lgbm_regressor() -> Any:
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=30, n_jobs=1, random_state=0, verbose=-1)


def _sk(path: str, **params: Any) -> Any:
    def make() -> Any:
        module, _, name = path.rpartition(".")
        return getattr(__import__(module, fromlist=[name]), name)(**params)

    return make


# family -> (classifier, regressor), as a user writes them: library defaults, small sizes
USER_FAMILIES: dict[str, tuple[Any, Any]] = {
    "HistGradientBoosting": (
        _sk("sklearn.ensemble.HistGradientBoostingClassifier", max_iter=30, random_state=0),
        _sk("sklearn.ensemble.HistGradientBoostingRegressor", max_iter=30, random_state=0),
    ),
    "XGBoost": (_xgb_classifier, _xgb_regressor),
    "LightGBM": (_lgbm_classifier, _lgbm_regressor),
    "RandomForest": (
        _sk("sklearn.ensemble.RandomForestClassifier", n_estimators=30, random_state=0),
        _sk("sklearn.ensemble.RandomForestRegressor", n_estimators=30, random_state=0),
    ),
    "ExtraTrees": (
        _sk("sklearn.ensemble.ExtraTreesClassifier", n_estimators=30, random_state=0),
        _sk("sklearn.ensemble.ExtraTreesRegressor", n_estimators=30, random_state=0),
    ),
    "GradientBoosting": (
        _sk("sklearn.ensemble.GradientBoostingClassifier", n_estimators=40, random_state=0),
        _sk("sklearn.ensemble.GradientBoostingRegressor", n_estimators=40, random_state=0),
    ),
    "linear": (
        _sk("sklearn.linear_model.LogisticRegression", max_iter=1000),
        _sk("sklearn.linear_model.Ridge"),
    ),
    "LinearSVC": (_sk("sklearn.svm.LinearSVC", random_state=0), None),  # scores
    "LinearRegression": (None, _sk("sklearn.linear_model.LinearRegression")),
    "MLP": (
        _sk("sklearn.neural_network.MLPClassifier", hidden_layer_sizes=(16,), random_state=0),
        _sk("sklearn.neural_network.MLPRegressor", hidden_layer_sizes=(16,), random_state=0),
    ),
}
USER_CASES = [
    pytest.param(family, classes, id=f"{family}-{classes}class" if classes else family)
    for family, (classifier, regressor) in USER_FAMILIES.items()
    for classes in ([2, 3] if classifier else []) + ([0] if regressor else [])
]


def _user_pipeline(estimator: Any) -> Any:
    """What a data scientist writes: impute and scale numbers, impute and one-hot strings."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),  # missing_values=NaN
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    preprocess = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def _answers(model: Any, X: pd.DataFrame, task: Task) -> tuple[np.ndarray | None, np.ndarray]:
    if task is Task.classification:
        return np.asarray(model.predict(X)), np.asarray(scores_of(model, X))
    return None, np.asarray(model.predict(X), dtype=np.float64).reshape(-1, 1)


@pytest.mark.parametrize(("family", "classes"), USER_CASES)
def test_user_pipeline_matches_sklearn(family: str, classes: int) -> None:
    from sklearn.model_selection import train_test_split

    frame = mixed_frame(rows=400, classes=classes)
    X, y = frame.drop(columns="target"), frame["target"]
    if family == "XGBoost" and classes:  # XGBoost's classifier takes only codes 0..n-1
        y = pd.Series(pd.Categorical(y).codes.astype(np.int64), index=y.index)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=1)
    assert X_train["colour"].isna().any() and X_test["size cm"].isna().any()
    classifier, regressor = USER_FAMILIES[family]
    task = Task.classification if classes else Task.regression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny data is not the subject
        model = _user_pipeline((classifier if classes else regressor)()).fit(X_train, y_train)

    exported = export_model(model, USER_FEATURES, task, OPSET)

    assert exported.missing_as_nan  # the imputer took NaN as the missing string
    served = X_test.copy()  # as Kiln serves it: a missing string is ""
    for name in CATEGORICAL:
        served[name] = served[name].astype(object).where(served[name].notna(), "")
    session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
    got = session.run(None, onnx_feeds(served, USER_FEATURES, exported.inputs))
    names = [o.name for o in session.get_outputs()]
    if task is Task.classification:
        kind = "probabilities" if hasattr(model, "predict_proba") else "scores"
        assert names == ["label", kind]
        got_labels, got_values = got[0], np.asarray(got[1], dtype=np.float64)
    else:
        assert names == ["prediction"]
        got_labels, got_values = None, np.asarray(got[0], dtype=np.float64)
    # Every row answers as scikit-learn does on the sample, or on its numbers rounded to
    # float32 (what the served model receives: see training.export.verify).
    as_float32 = X_test.copy()
    as_float32[NUMERIC] = X_test[NUMERIC].astype(np.float32).astype(np.float64)
    agree = []
    for sample in (X_test, as_float32):
        labels, values = _answers(model, sample, task)
        ok = np.isclose(got_values, values, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL).all(axis=1)
        agree.append(ok if labels is None else ok & (got_labels == labels))
    assert (agree[0] | agree[1]).all(), f"{(~(agree[0] | agree[1])).sum()} rows agree with neither"
    assert agree[0].mean() >= 0.95  # float32 rounding explains a few rows at most
    result = verify(
        "user",
        model,
        exported,
        served,
        USER_FEATURES,
        task,
        atol=DEFAULT_ATOL,
        rtol=DEFAULT_RTOL,
    )
    assert result.passed and result.rows == len(X_test)
