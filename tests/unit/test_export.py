"""export_model on models a user fitted: refusals with their place, inputs, missing strings."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    PowerTransformer,
    SplineTransformer,
    StandardScaler,
)
from sklearn.svm import LinearSVC

from kiln.artifact import FeatureKind, Task
from kiln.errors import SpecError, TrainingError
from tests.conftest import REPO
from training.converters import float32_threshold, register_converters
from training.estimators import make_estimator
from training.export import export_model, model_input, onnx_feeds, verify

OPSET = {"": 18, "ai.onnx.ml": 3}
NUMERIC = ["size", "weight"]
FEATURES = [(n, FeatureKind.numeric) for n in NUMERIC] + [("colour", FeatureKind.categorical)]
C = Task.classification


@pytest.fixture(autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting on one OpenMP thread: on a busy machine its threads wait on each
    other (a 30-tree fit took 4 s instead of 0.06 s); the answers are the same."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "size": rng.normal(10, 3, 120).round(2),
            "weight": rng.gamma(2, 5, 120).round(1),
            "colour": rng.choice(["red", "green", "blue"], 120).astype(object),
        }
    )
    X.loc[::9, "colour"] = np.nan
    y = np.where(X["size"] + 2 * (X["colour"] == "red") > 10.5, "yes", "no")
    return X, y


def _pipeline(numeric: list[tuple[str, Any]], estimator: Any) -> Pipeline:
    preprocess = ColumnTransformer(
        [
            ("num", Pipeline(numeric), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def _served(X: pd.DataFrame) -> pd.DataFrame:
    served = X.copy()
    served["colour"] = served["colour"].where(served["colour"].notna(), "")
    return served


def _verify(model: Any, exported: Any, X: pd.DataFrame, features: Any = FEATURES) -> Any:
    return verify("t", model, exported, X, features, C, atol=1e-4, rtol=1e-6)


def _no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    import skl2onnx

    def fail(*_: Any, **__: Any) -> None:
        raise AssertionError("convert_sklearn was called")

    monkeypatch.setattr(skl2onnx, "convert_sklearn", fail)


# --- refusals, before skl2onnx runs ---------------------------------------------------------


def test_a_step_without_converter_is_named_by_its_place(
    frame: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = frame
    steps = [("impute", SimpleImputer()), ("spline", SplineTransformer())]
    model = _pipeline(steps, LogisticRegression()).fit(X, y)
    _no_conversion(monkeypatch)
    with pytest.raises(TrainingError) as info:
        export_model(model, FEATURES, C, OPSET)
    message = str(info.value)
    assert "preprocess > num > spline: SplineTransformer" in message
    assert "skl2onnx has no converter for SplineTransformer" in message
    assert "replace it with StandardScaler" in message


def test_list_members_are_named_by_index(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    inner = Pipeline([("spline", SplineTransformer()), ("svc", LinearSVC())])
    model = CalibratedClassifierCV(inner, cv=2).fit(X[NUMERIC].to_numpy(), y)
    with pytest.raises(TrainingError, match=r"0 > spline: SplineTransformer: skl2onnx has no"):
        export_model(model, FEATURES[:2], C, OPSET)


def test_power_transformer_has_a_converter_and_verifies(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    # skl2onnx 1.20 converts PowerTransformer, so it is not refused (issue 12's example)
    X, y = frame
    steps = [("impute", SimpleImputer()), ("power", PowerTransformer())]
    model = _pipeline(steps, LogisticRegression()).fit(X, y)
    exported = export_model(model, FEATURES, C, OPSET)
    assert _verify(model, exported, _served(X)).passed


def test_native_categorical_histgradientboosting_is_refused(
    frame: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = frame
    encoder = OrdinalEncoder(encoded_missing_value=-1)
    preprocess = ColumnTransformer([("num", "passthrough", NUMERIC), ("cat", encoder, ["colour"])])
    native = HistGradientBoostingClassifier(max_iter=5, categorical_features=[2])
    model = Pipeline([("preprocess", preprocess), ("model", native)]).fit(X, y)
    _no_conversion(monkeypatch)
    with pytest.raises(TrainingError) as info:
        export_model(model, FEATURES, C, OPSET)
    assert "model: HistGradientBoostingClassifier: native categorical support" in str(info.value)
    assert "one-hot encode the categorical columns upstream" in str(info.value)


@pytest.mark.parametrize("value", [[0], ["colour"], [True, False]])
def test_spec_refuses_native_categorical_histgradientboosting(value: Any) -> None:
    with pytest.raises(SpecError) as info:
        make_estimator("HistGradientBoostingClassifier", {"categorical_features": value})
    [(field, message)] = info.value.problems
    assert field == "estimator.params.categorical_features"
    assert "one-hot encodes the categorical features already" in message


def test_histgradientboosting_from_dtype_without_categories_exports(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    estimator = make_estimator("HistGradientBoostingClassifier", {"max_iter": 5})
    model = estimator.fit(X[NUMERIC], y)  # 'from_dtype' on numbers: no categorical column
    exported = export_model(model, FEATURES[:2], C, OPSET)
    assert _verify(model, exported, X[NUMERIC], FEATURES[:2]).passed


@pytest.mark.parametrize(
    ("vectorizer", "expected"),
    [
        (TfidfVectorizer(ngram_range=(1, 2)), "ngram_range=(1, 2): bigrams"),
        (TfidfVectorizer(sublinear_tf=True), "sublinear_tf=True: sublinear term frequencies"),
        (TfidfVectorizer(analyzer="char"), "analyzer='char': character analyzers"),
        (TfidfVectorizer(strip_accents="ascii"), "strip_accents='ascii': accent stripping"),
        (TfidfVectorizer(token_pattern=r"\w+"), r"token_pattern='\\w+': custom token patterns"),
    ],
)
def test_unfaithful_tfidf_options_are_refused(vectorizer: Any, expected: str) -> None:
    text = pd.DataFrame({"text": ["free prize now", "see you at noon", "win a free car"] * 4})
    y = np.array([1, 0, 1] * 4)
    preprocess = ColumnTransformer([("words", vectorizer, "text")])
    model = Pipeline([("preprocess", preprocess), ("model", LogisticRegression())]).fit(text, y)
    with pytest.raises(TrainingError) as info:
        export_model(model, [("text", FeatureKind.text)], C, OPSET)
    assert f"preprocess > words: TfidfVectorizer: {expected}" in str(info.value)


def test_a_function_transformer_with_code_is_refused(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    steps = [("impute", SimpleImputer()), ("log", FunctionTransformer(np.log1p))]
    model = _pipeline(steps, LogisticRegression()).fit(X, y)
    with pytest.raises(TrainingError, match=r"preprocess > num > log: FunctionTransformer: a "):
        export_model(model, FEATURES, C, OPSET)


def test_an_unfitted_model_is_refused() -> None:
    with pytest.raises(TrainingError, match="LogisticRegression is not fitted"):
        export_model(LogisticRegression(), FEATURES[:2], C, OPSET)


def test_nan_and_empty_string_both_learned_as_values_is_refused(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    X = X.assign(shop=np.where(np.arange(len(X)) % 5 == 0, "", "north"))
    preprocess = ColumnTransformer(
        [
            ("num", SimpleImputer(), NUMERIC),
            ("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"]),  # NaN a category
            ("shop", OneHotEncoder(handle_unknown="ignore"), ["shop"]),  # "" a category
        ]
    )
    model = Pipeline([("preprocess", preprocess), ("model", LogisticRegression())]).fit(X, y)
    features = [*FEATURES, ("shop", FeatureKind.categorical)]
    with pytest.raises(TrainingError) as info:
        export_model(model, features, C, OPSET)
    message = str(info.value)
    assert "preprocess > colour: OneHotEncoder takes NaN as a missing string" in message
    assert 'preprocess > shop: OneHotEncoder learned "" as a value' in message


def test_ordinal_encoder_encoding_nan_as_nan_is_refused(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    preprocess = ColumnTransformer(
        [("num", "passthrough", NUMERIC), ("cat", OrdinalEncoder(), ["colour"])]
    )
    model = Pipeline([("preprocess", preprocess), ("model", HistGradientBoostingClassifier())])
    model.fit(X, y)
    with pytest.raises(TrainingError, match=r"preprocess > cat: OrdinalEncoder: encodes missing"):
        export_model(model, FEATURES, C, OPSET)


# --- missing strings: "" takes NaN's path -----------------------------------------------------


@pytest.mark.parametrize(
    "categorical",
    [
        Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
        ),
        OneHotEncoder(handle_unknown="ignore"),  # NaN one of its categories
        OrdinalEncoder(encoded_missing_value=-1),
    ],
    ids=["imputer", "onehot-nan-category", "ordinal-encoded-missing"],
)
def test_a_model_that_learned_nan_gets_nan_where_kiln_serves_empty_string(
    frame: tuple[pd.DataFrame, np.ndarray], categorical: Any
) -> None:
    X, y = frame
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    preprocess = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, ["colour"])])
    model = Pipeline([("preprocess", preprocess), ("model", LogisticRegression())]).fit(X, y)
    exported = export_model(model, FEATURES, C, OPSET)
    assert exported.missing_as_nan
    served = _served(X)
    assert model_input(model, served, FEATURES, True)["colour"].isna().sum() == 14
    session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, onnx_feeds(served, FEATURES, exported.inputs))
    assert labels.tolist() == model.predict(X).tolist()  # X has NaN, ONNX got ""
    np.testing.assert_allclose(probabilities, model.predict_proba(X), atol=1e-5)
    assert _verify(model, exported, served).passed
    assert _verify(model, exported, X).passed  # NaN in a string column is served as "" too


def test_a_spec_style_model_keeps_empty_string_as_a_category(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    served = _served(X)  # fitted on "", as Kiln's spec pipelines are
    model = _pipeline([("impute", SimpleImputer())], LogisticRegression()).fit(served, y)
    exported = export_model(model, FEATURES, C, OPSET)
    assert not exported.missing_as_nan
    assert (model_input(model, served, FEATURES, False)["colour"] == "").sum() == 14
    assert _verify(model, exported, served).passed


# --- inputs of a model without a ColumnTransformer ------------------------------------------


def test_an_estimator_fitted_on_an_array_takes_the_features_in_the_given_order(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    model = LogisticRegression().fit(X[NUMERIC].to_numpy(), y)  # no feature_names_in_
    features = [("b x", FeatureKind.numeric), ("a", FeatureKind.numeric)]
    exported = export_model(model, features, C, OPSET)
    assert exported.inputs == {"b x": "b_x", "a": "a"}
    session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["b_x", "a"]
    renamed = X[NUMERIC].set_axis(["b x", "a"], axis=1)
    labels, probabilities = session.run(None, onnx_feeds(renamed, features, exported.inputs))
    assert labels.tolist() == model.predict(X[NUMERIC].to_numpy()).tolist()
    np.testing.assert_allclose(probabilities, model.predict_proba(X[NUMERIC].to_numpy()), atol=1e-6)
    assert exported.outputs[1].name == "probabilities"
    assert _verify(model, exported, renamed, features).passed


def test_a_pipeline_fitted_on_a_frame_takes_its_columns_in_its_own_order(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    model = Pipeline([("scale", StandardScaler()), ("svc", LinearSVC())]).fit(X[NUMERIC], y)
    features = FEATURES[:2][::-1]  # weight, size: the ONNX inputs follow this order
    exported = export_model(model, features, C, OPSET)
    assert list(exported.inputs) == ["weight", "size"]
    assert exported.outputs[1].name == "scores"  # LinearSVC has only decision_function
    assert _verify(model, exported, X[NUMERIC], features).passed


def test_mixed_kinds_without_a_column_transformer_are_refused(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    model = LogisticRegression().fit(X[NUMERIC].to_numpy(), y)
    with pytest.raises(TrainingError, match="must be all numeric or all strings"):
        export_model(model, [FEATURES[0], FEATURES[2]], C, OPSET)


def test_features_that_are_not_the_fitted_columns_are_refused(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    model = LogisticRegression().fit(X[NUMERIC], y)
    with pytest.raises(TrainingError, match="missing: 'weight'; not used by the model: 'colour'"):
        export_model(model, [FEATURES[0], FEATURES[2]], C, OPSET)


# --- converters -------------------------------------------------------------------------------


def test_converters_register_once_and_not_at_import() -> None:
    code = (
        "import sys, training.converters as c, training.estimators, training.export\n"
        "assert c.registered() is None\n"
        "assert not {'xgboost', 'lightgbm', 'onnxmltools'} & set(sys.modules)\n"
        "first = c.register_converters()\n"
        "assert c.register_converters() is first, 'registered twice'\n"
        "print(','.join(first))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [
        "XGBClassifier,XGBRegressor,LabelledXGBClassifier,LGBMClassifier,LGBMRegressor"
    ]


def test_xgboost_classifier_of_the_spec_answers_with_the_data_labels(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    register_converters()
    X, y = frame
    model = make_estimator("XGBClassifier", {"n_estimators": 5, "n_jobs": 1})
    model.fit(X[NUMERIC], y)
    assert model.classes_.tolist() == ["no", "yes"]
    exported = export_model(model, FEATURES[:2], C, OPSET)
    assert exported.outputs[0].dtype == "string"
    assert _verify(model, exported, X[NUMERIC], FEATURES[:2]).passed


def test_float32_threshold_splits_float32_values_as_the_float64_one() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(0, 10, 2000)
    x = np.concatenate([t.astype(np.float32), np.nextafter(t.astype(np.float32), np.inf)])
    for strict in (False, True):
        t32 = np.tile(float32_threshold(t, strict=strict), 2)
        t64 = np.tile(t, 2)
        want = x.astype(np.float64) < t64 if strict else x.astype(np.float64) <= t64
        got = x < t32 if strict else x <= t32
        assert (got == want).all()


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_a_booster_fitted_on_a_frame_exports_alone(library: str) -> None:
    # XGBoost names its features after the columns; LightGBM writes "a b" as "a_b"
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a b": rng.random(200), "c": rng.random(200)})
    y = 3 * X["a b"] + X["c"]
    if library == "xgboost":
        from xgboost import XGBRegressor

        model: Any = XGBRegressor(n_estimators=10, n_jobs=1).fit(X, y)
    else:
        from lightgbm import LGBMRegressor

        model = LGBMRegressor(n_estimators=10, n_jobs=1, verbose=-1).fit(X, y)
    features = [("c", FeatureKind.numeric), ("a b", FeatureKind.numeric)]
    exported = export_model(model, features, Task.regression, OPSET)
    assert exported.inputs == {"c": "c", "a b": "a_b"}
    result = verify("t", model, exported, X, features, Task.regression, atol=1e-4, rtol=1e-6)
    assert result.passed


def test_verify_fails_for_another_model_and_says_why_trees_after_a_scaler_can_differ(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    # the float32 second look (verify's docstring) does not hide a model that answers otherwise
    from kiln.errors import VerificationError

    X, y = frame
    steps = [("impute", SimpleImputer()), ("scale", StandardScaler())]
    model = _pipeline(steps, HistGradientBoostingClassifier(max_iter=10)).fit(X, y)
    other = _pipeline(steps, HistGradientBoostingClassifier(max_iter=10)).fit(X, y[::-1])
    exported = export_model(other, FEATURES, C, OPSET)
    with pytest.raises(VerificationError) as info:
        _verify(model, exported, _served(X))
    message = str(info.value)
    assert "labels differ" in message and "Worst rows:" in message
    assert "the trees split values scaled by StandardScaler" in message


def test_xgboost_after_a_sparse_output_is_refused(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    from xgboost import XGBRegressor

    X, y = frame
    preprocess = ColumnTransformer(
        [("num", SimpleImputer(), NUMERIC), ("cat", OneHotEncoder(), ["colour"])],
        sparse_threshold=1.0,  # sparse whatever the density
    )
    model = Pipeline([("preprocess", preprocess), ("model", XGBRegressor(n_estimators=3))])
    model.fit(X, (y == "yes").astype(float))
    with pytest.raises(TrainingError) as info:
        export_model(model, FEATURES, Task.regression, OPSET)
    assert "model: XGBRegressor: XGBoost reads the zeros a sparse matrix leaves out" in str(
        info.value
    )


def test_a_missing_number_is_judged_with_the_fill_value_the_graph_holds() -> None:
    """ONNX's Imputer holds a median of 0.1 as float32 (0.100000001...): a histogram
    boosting split between the two (it bins float64 values) sends a missing number the other
    way than scikit-learn does. The served graph answers for that float32 fill value, so
    verification judges the row with it."""
    f32 = float(np.float32(0.1))  # 0.10000000149..., the float32 nearest 0.1
    X = pd.DataFrame({"x": [0.1] * 5 + [f32] * 2 + [0.5] * 2})
    y = ["a"] * 5 + ["b"] * 4
    booster = HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=1, random_state=0)
    model = Pipeline([("impute", SimpleImputer(strategy="median")), ("hgb", booster)]).fit(X, y)
    assert model[0].statistics_[0] == 0.1
    features = [("x", FeatureKind.numeric)]
    exported = export_model(model, features, Task.classification, OPSET)
    sample = pd.DataFrame({"x": [np.nan, 0.5]})
    session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
    served = session.run(None, onnx_feeds(sample, features, exported.inputs))[0].tolist()
    assert model.predict(sample).tolist() == ["a", "b"]  # scikit-learn fills in 0.1
    assert served == ["b", "b"]  # the graph fills in float32(0.1)
    result = verify("imputed", model, exported, sample, features, Task.classification,
                    atol=1e-4, rtol=1e-6)  # fmt: skip
    assert result.passed and result.label_mismatches == 0
