"""The input contract of an imported model: names, kinds, the sample as served, the labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kiln.artifact import FeatureKind, Task
from kiln.errors import DataError, SpecError
from tests.conftest import mixed_frame
from training.contract import (
    SourceView,
    as_served,
    checked_labels,
    frame_file,
    input_contract,
    parse_features,
    read_sample,
    task_of,
    text_columns,
)

NUM, CAT, TEXT = FeatureKind.numeric, FeatureKind.categorical, FeatureKind.text
NUMERIC = ["size cm", "weight", "count"]
CATEGORICAL = ["colour", "shop"]


def _pipeline(estimator: Any = None) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                CATEGORICAL,
            ),
        ]
    )
    return Pipeline([("preprocess", pre), ("model", estimator or LogisticRegression())])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return mixed_frame(rows=120)


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> Pipeline:
    return _pipeline().fit(frame.drop(columns="target"), frame["target"])


def test_names_and_kinds_come_from_the_model_and_the_sample(
    fitted: Pipeline, frame: pd.DataFrame
) -> None:
    sample = frame.drop(columns="target").assign(note="x")[["note", *reversed(frame.columns[:-1])]]
    contract = input_contract(fitted, sample)
    assert contract.features == [(n, NUM) for n in NUMERIC] + [(n, CAT) for n in CATEGORICAL]
    assert contract.by_name and contract.unused == ["note"]
    assert contract.notes() == ["dropped sample columns the model does not use: 'note'"]


def test_a_missing_column_is_named(fitted: Pipeline, frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"has no column 'shop', which the model needs") as caught:
        input_contract(fitted, frame.drop(columns=["target", "shop"]), source="holdout.csv")
    assert str(caught.value).startswith("holdout.csv: ")


def test_dtypes_decide_the_kinds() -> None:
    sample = pd.DataFrame(
        {
            "f": [1.5, np.nan],
            "i": [1, 2],
            "s": ["a", None],
            "c": pd.Categorical(["x", "y"]),
            "b": [True, False],
            "o": pd.Series([1, 2.5], dtype=object),
        }
    )
    contract = input_contract(object(), sample)
    assert dict(contract.features) == {"f": NUM, "i": NUM, "s": CAT, "c": CAT, "b": CAT, "o": NUM}
    assert contract.restore == {"b": "bool"} and not contract.by_name


def test_dates_are_refused_unless_declared() -> None:
    sample = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    with pytest.raises(DataError, match="'when' holds datetime64"):
        input_contract(object(), sample)
    assert input_contract(object(), sample, overrides={"when": CAT}).features == [("when", CAT)]


def test_features_override_the_dtypes_and_name_only_model_columns(
    fitted: Pipeline, frame: pd.DataFrame
) -> None:
    X = frame.drop(columns="target")
    contract = input_contract(fitted, X, overrides={"count": CAT}, declared={"weight": CAT})
    assert dict(contract.features)["count"] is CAT and dict(contract.features)["weight"] is CAT
    assert contract.restore == {"count": "number", "weight": "number"}
    with pytest.raises(DataError, match="--features names 'height', which the model does not"):
        input_contract(fitted, X, overrides={"height": NUM})


def test_a_tfidf_column_is_text() -> None:
    sample = pd.DataFrame({"message": ["free prize now", "see you at noon"] * 5, "n": range(10)})
    pre = ColumnTransformer([("words", TfidfVectorizer(), "message"), ("n", "passthrough", ["n"])])
    model = make_pipeline(pre, LogisticRegression()).fit(sample, [1, 0] * 5)
    assert text_columns(model) == {"message"}
    assert input_contract(model, sample).features == [("message", TEXT), ("n", NUM)]


def test_a_model_fitted_on_an_array_takes_the_sample_columns_in_order() -> None:
    rng = np.random.default_rng(0)
    model = RandomForestRegressor(n_estimators=3, random_state=0)
    model.fit(rng.random((20, 2)), np.arange(20.0))
    sample = pd.DataFrame({"b": [0.1, 0.2], "a": [0.3, 0.4]})
    contract = input_contract(model, sample)
    assert contract.names == ["b", "a"] and not contract.by_name
    np.testing.assert_array_equal(
        SourceView(model, contract).predict(as_served(sample, contract)),
        model.predict(sample.to_numpy()),
    )
    with pytest.raises(DataError, match="has 3 feature columns but the model was fitted on 2"):
        input_contract(model, sample.assign(c=1.0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=numeric, b c=text", {"a": NUM, "b c": TEXT}),
        ("x=1=categorical", {"x=1": CAT}),
        ("", {}),
        (None, {}),
        ({"a": "text"}, {"a": TEXT}),
    ],
)
def test_parse_features(text: Any, expected: dict[str, FeatureKind]) -> None:
    assert parse_features(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("a=number", "the kind is one of numeric, categorical, text"), ("a", "not of the form")],
)
def test_parse_features_refuses(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_features(text)


def test_the_sample_is_read_as_training_reads_data(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("n,c\n1.5,NA\n,b\n2,\n")
    sample, file = read_sample(path)
    assert sample["n"].isna().tolist() == [False, True, False]  # only an empty field
    assert sample["c"].tolist()[:2] == ["NA", "b"] and pd.isna(sample["c"].iloc[2])
    assert file.rows == 3 and file.source == str(path) and len(file.sha256) == 64
    contract = input_contract(object(), sample)
    served = as_served(sample, contract)
    assert served["c"].tolist() == ["NA", "b", ""]  # missing as served: ""
    assert served["n"].dtype == np.float64  # the ONNX feed makes it float32


def test_as_served_refuses_what_serving_refuses() -> None:
    sample = pd.DataFrame({"n": ["1", "n/a"]})
    contract = input_contract(object(), sample, overrides={"n": NUM})
    with pytest.raises(SpecError, match="non-numeric values such as 'n/a'"):
        as_served(sample, contract)


def test_the_source_view_hands_the_model_nan_for_a_missing_category(
    fitted: Pipeline, frame: pd.DataFrame
) -> None:
    X = frame.drop(columns="target")
    assert X["colour"].isna().any()
    contract = input_contract(fitted, X)
    served = as_served(X, contract)
    assert (served["colour"] == "").sum() == X["colour"].isna().sum()
    view = SourceView(fitted, contract, missing_as_nan=True)  # as the export decides for it
    np.testing.assert_array_equal(view.predict_proba(served), fitted.predict_proba(X))
    assert list(view.classes_) == ["no", "yes"] and not hasattr(
        SourceView(RandomForestRegressor(), contract), "predict_proba"
    )


def test_the_source_view_restores_booleans() -> None:
    sample = pd.DataFrame({"flag": [True, False, True, False], "x": [1.0, 2.0, 3.0, 4.0]})
    pre = ColumnTransformer([("f", OneHotEncoder(), ["flag"]), ("x", "passthrough", ["x"])])
    model = make_pipeline(pre, LogisticRegression()).fit(sample, [1, 0, 1, 0])
    contract = input_contract(model, sample)
    served = as_served(sample, contract)
    assert served["flag"].tolist() == ["True", "False", "True", "False"]
    view = SourceView(model, contract)
    np.testing.assert_array_equal(view.predict_proba(served), model.predict_proba(sample))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["no", "maybe", "yes", "perhaps"], r"labels 'maybe', 'perhaps' are not classes"),
        (["no", None, "yes", "no"], "1 of 4 labels are empty"),
    ],
)
def test_labels_the_model_does_not_know_are_refused(
    fitted: Pipeline, labels: list[Any], message: str
) -> None:
    with pytest.raises(DataError, match=message) as caught:
        checked_labels(fitted, pd.Series(labels, dtype=object), Task.classification, "y")
    assert caught.value.exit_code == 2


def test_labels_are_compared_as_the_model_holds_its_classes() -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [1, 2, 1, 2])
    y = checked_labels(model, pd.Series([1.0, 2.0]), Task.classification, "y")
    assert y.dtype == np.int64
    regressor = RandomForestRegressor(n_estimators=2).fit([[0.0], [1.0]], [0.5, 1.5])
    with pytest.raises(DataError, match="regressor but a label is 'high'"):
        checked_labels(regressor, pd.Series(["high"]), Task.regression, "y")


def test_the_task_is_the_model_s() -> None:
    assert task_of(LogisticRegression(), "m") is Task.classification
    assert task_of(make_pipeline(StandardScaler(), RandomForestRegressor()), "m") is Task.regression
    with pytest.raises(DataError, match="neither a classifier nor a regressor"):
        task_of(StandardScaler(), "m.joblib")


def test_a_frame_sample_has_a_fingerprint(frame: pd.DataFrame) -> None:
    first, again = frame_file(frame), frame_file(frame.copy())
    assert first == again and first.source == "python:DataFrame" and first.rows == len(frame)
    assert frame_file(frame.head(10)).sha256 != first.sha256
