"""What the training data says (training/evidence.py), on scikit-learn's bundled data sets:
bands that each hold enough cases, outcomes that match the rows, the features that matter."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from kiln.artifact import FeatureEvidence, FeatureImportance, FeatureKind, Task
from training.evidence import (
    MAX_BANDS,
    category_bands,
    chosen_features,
    evidence,
    min_band_rows,
    numeric_bands,
)


def _numeric(X: pd.DataFrame) -> list[tuple[str, FeatureKind]]:
    return [(str(c), FeatureKind.numeric) for c in X.columns]


def _rows_in(found: FeatureEvidence, X: pd.DataFrame, i: int) -> pd.Series:
    band, column = found.bands[i], X[found.feature]
    if band.missing:
        return column.isna()
    if band.categories is not None:
        return column.astype(str).isin(band.categories) & column.notna()
    if found.kind is FeatureKind.categorical:  # "other": none of the named bands
        named = {c for b in found.bands if b.categories for c in b.categories}
        return ~column.astype(str).isin(named) & column.notna()
    inside = column.notna()
    if band.low is not None:
        inside &= column >= band.low
    if band.high is not None:
        inside &= column < band.high
    return inside


def _importance(**means: float) -> list[FeatureImportance]:
    return [FeatureImportance(feature=k, mean=v, std=0.0) for k, v in means.items()]


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target.map({0: "malignant", 1: "benign"})


def test_every_band_holds_enough_cases_and_its_shares_are_the_rows(
    cancer: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = cancer
    classes = ["benign", "malignant"]
    found = evidence(X, y, _numeric(X), Task.classification, classes, None)
    assert [f.feature for f in found] == ["mean radius", "mean texture", "mean perimeter"]
    need = min_band_rows(len(X))
    assert need == 30
    for item in found:
        assert 2 <= len(item.bands) <= MAX_BANDS
        assert item.rows == len(X) == sum(b.rows for b in item.bands)  # no value is missing
        for i, band in enumerate(item.bands):
            rows = _rows_in(item, X, i)
            assert band.rows == int(rows.sum()) >= need
            assert band.shares is not None and sum(band.shares) == pytest.approx(1, abs=1e-3)
            expected = [float((y[rows] == c).mean()) for c in classes]
            assert band.shares == pytest.approx(expected, abs=1e-4)
            assert band.mean is None


def test_numeric_bands_are_contiguous_with_readable_edges(
    cancer: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = cancer
    (radius,) = evidence(
        X,
        y,
        [("mean radius", FeatureKind.numeric)],
        Task.classification,
        ["benign", "malignant"],
        None,
    )
    bands = radius.bands
    assert bands[0].low is None and bands[-1].high is None
    for left, right in itertools.pairwise(bands):
        assert left.high == right.low
        assert left.high == round(left.high)  # radius spans ~10: whole-number edges
    assert bands[0].label == f"under {bands[0].high:g}"
    assert bands[-1].label == f"{bands[-1].low:g} or more"
    assert bands[1].label == f"{bands[1].low:g} to {bands[1].high:g}"
    # the outcome changes across the bands: large tumours are mostly malignant
    malignant = [b.shares[1] for b in bands if b.shares]
    assert malignant[0] < 0.1 < 0.9 < malignant[-1]


def test_the_features_that_matter_most_are_banded_first(
    cancer: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = cancer
    ranked = _importance(
        **{
            "worst area": 0.05,
            "mean smoothness": 0.2,
            "worst texture": 0.01,
            "mean radius": 0.0,
            "area error": -0.01,
        }
    )
    found = evidence(X, y, _numeric(X), Task.classification, ["benign", "malignant"], ranked)
    assert [f.feature for f in found] == ["mean smoothness", "worst area", "worst texture"]
    assert [f.importance for f in found] == [0.2, 0.05, 0.01]


def test_only_features_that_matter_and_never_text() -> None:
    features = [("a", FeatureKind.numeric), ("note", FeatureKind.text), ("b", FeatureKind.numeric)]
    assert chosen_features(features, None) == [
        ("a", FeatureKind.numeric, None),
        ("b", FeatureKind.numeric, None),
    ]
    ranked = _importance(note=0.5, b=0.1, a=0.0)
    assert chosen_features(features, ranked) == [("b", FeatureKind.numeric, 0.1)]
    # nothing matters: the first features stand in
    assert [n for n, _, _ in chosen_features(features, _importance(a=0.0, b=-0.1))] == ["a", "b"]


def test_three_classes_each_get_a_share() -> None:
    data = load_wine(as_frame=True)
    X, y = data.data, data.target
    classes = [0, 1, 2]
    found = evidence(X, y, _numeric(X), Task.classification, classes, _importance(proline=0.3))
    (proline,) = found[:1]
    assert proline.feature == "proline"
    need = min_band_rows(len(X))
    for i, band in enumerate(proline.bands):
        assert band.rows >= need and band.shares is not None and len(band.shares) == 3
        rows = _rows_in(proline, X, i)
        assert band.shares == pytest.approx(
            [float((y[rows] == c).mean()) for c in classes], abs=1e-4
        )
    # proline is a whole number: the middle bands read as inclusive ranges, "500 to 659"
    middle = proline.bands[1]
    assert middle.low is not None and middle.high is not None
    assert middle.label == f"{middle.low:g} to {middle.high - 1:g}"


def test_regression_bands_hold_the_average_target() -> None:
    data = load_diabetes(as_frame=True)
    X, y = data.data, data.target
    found = evidence(X, y, _numeric(X), Task.regression, None, _importance(bmi=0.2, s5=0.1))
    assert [f.feature for f in found][:2] == ["bmi", "s5"]
    bmi = found[0]
    for i, band in enumerate(bmi.bands):
        assert band.shares is None
        assert band.mean == pytest.approx(float(y[_rows_in(bmi, X, i)].mean()), abs=1e-4)
    means = [b.mean for b in bmi.bands]
    assert means[-1] > means[0]  # a higher bmi goes with a higher progression here


def test_missing_values_are_a_band_when_there_are_enough(
    cancer: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = cancer
    X = X[["mean radius"]].copy()
    rng = np.random.default_rng(0)
    many = X.copy()
    many.loc[rng.choice(len(X), 60, replace=False), "mean radius"] = np.nan
    few = X.copy()
    few.loc[rng.choice(len(X), 10, replace=False), "mean radius"] = np.nan
    classes = ["benign", "malignant"]
    (with_band,) = evidence(many, y, _numeric(many), Task.classification, classes, None)
    assert with_band.bands[-1].missing and with_band.bands[-1].label == "missing"
    assert with_band.bands[-1].rows == 60 and with_band.rows == len(X)
    (without,) = evidence(few, y, _numeric(few), Task.classification, classes, None)
    assert not any(b.missing for b in without.bands)
    assert without.rows == len(X) - 10  # too few to read: left out of every band


def test_categories_keep_the_common_ones_and_merge_the_rest_as_other() -> None:
    data = load_wine(as_frame=True)
    X, y = data.data, data.target
    cut = pd.cut(X["alcohol"], [0, 12.4, 13.1, 99], labels=["low", "mid", "high"]).astype(str)
    rare = pd.Series([f"rare{i % 6}" for i in range(len(X))], index=X.index)
    column = cut.where(np.arange(len(X)) % 4 != 0, rare)  # a quarter of rows: 6 rare values
    frame = pd.DataFrame({"grade": column})
    (grade,) = evidence(
        frame, y, [("grade", FeatureKind.categorical)], Task.classification, [0, 1, 2], None
    )
    labels = [b.label for b in grade.bands]
    assert labels[-1] == "other" and grade.bands[-1].categories is None
    assert set(labels[:-1]) <= {"low", "mid", "high"} and "rare0" not in labels
    need = min_band_rows(len(X))
    for i, band in enumerate(grade.bands):
        assert band.rows == int(_rows_in(grade, frame, i).sum()) >= need
    assert grade.rows == len(X)


def test_at_most_five_category_bands() -> None:
    values = pd.Series([f"c{i % 9}" for i in range(900)])
    bands = category_bands(values, 30)
    assert len(bands) == MAX_BANDS and bands[-1] is None  # four named, then "other"


def test_a_number_with_few_values_gets_a_band_per_value_labelled_plainly() -> None:
    years = pd.Series([2007] * 110 + [2008] * 114 + [2009] * 120, dtype=float)
    assert numeric_bands(years, 30) == [(None, 2008.0), (2008.0, 2009.0), (2009.0, None)]
    y = pd.Series(["a", "b"] * 172)
    (year,) = evidence(
        pd.DataFrame({"year": years}),
        y,
        [("year", FeatureKind.numeric)],
        Task.classification,
        ["a", "b"],
        None,
    )
    assert [b.label for b in year.bands] == ["2007", "2008", "2009"]  # not "2,007"


def test_a_feature_that_cannot_make_two_bands_is_passed_over() -> None:
    frame = pd.DataFrame({"flat": [1.0] * 200, "split": [0.0] * 100 + [1.0] * 100})
    y = pd.Series(["a"] * 150 + ["b"] * 50)
    features = [("flat", FeatureKind.numeric), ("split", FeatureKind.numeric)]
    found = evidence(frame, y, features, Task.classification, ["a", "b"], None)
    assert [f.feature for f in found] == ["split"]
    assert (
        evidence(frame.head(40), y.head(40), features, Task.classification, ["a", "b"], None) == []
    )


@pytest.mark.parametrize(("rows", "need"), [(50, 30), (569, 30), (1000, 50), (10_000, 500)])
def test_the_fewest_cases_a_band_may_hold(rows: int, need: int) -> None:
    assert min_band_rows(rows) == need


def test_a_common_value_keeps_its_own_band_and_the_rare_ones_theirs() -> None:
    """Calls to support: most customers make none. Quantiles would fold 1, 2 and 3 calls into
    one band; a band per value keeps them apart, each big enough to read."""
    calls = pd.Series([0.0] * 700 + [1.0] * 100 + [2.0] * 100 + [3.0] * 100)
    assert numeric_bands(calls, 50) == [(None, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, None)]


def test_a_band_too_small_to_read_merges_with_its_smaller_neighbour() -> None:
    years = pd.Series([2007.0] * 200 + [2008.0] * 5 + [2009.0] * 120)
    # 2008 alone (5 cases) cannot be read: it joins 2009, the smaller neighbour
    assert numeric_bands(years, 30) == [(None, 2008.0), (2008.0, None)]
    y = pd.Series(["a", "b"] * 162 + ["a"])
    frame = pd.DataFrame({"year": years})
    (year,) = evidence(frame, y, _numeric(frame), Task.classification, ["a", "b"], None)
    assert [(b.label, b.rows) for b in year.bands] == [("2007", 200), ("2008 or more", 125)]
