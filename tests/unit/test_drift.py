"""PSI (kiln/drift.py) and the training reference it compares with (training/stats.py).

The expected values are worked out here from explicit bin shares or from the normal
distribution's own quantiles, never by the code under test: 0 for the training data itself,
a hand-computed value for a known shift, the analytic value for a shifted normal.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from kiln.artifact import Bins, FeatureKind, Task, read_metadata
from kiln.drift import FLOOR, SHIFTED, bin_count, bin_index, bin_labels, psi, psi_of_counts
from kiln.values import MISSING_STRING
from tests.conftest import REPO, mixed_frame
from training.drift import SOME_CHANGE, FeatureDrift, stats_reference, verdict
from training.stats import DRIFT_CATEGORIES, prediction_bins, reference

TESTDATA = REPO / "tests" / "testdata"
FEATURES = [
    ("size cm", FeatureKind.numeric),
    ("weight", FeatureKind.numeric),
    ("count", FeatureKind.numeric),
    ("colour", FeatureKind.categorical),
    ("shop", FeatureKind.categorical),
]


def typed(frame: pd.DataFrame, name: str, kind: FeatureKind) -> np.ndarray:
    """A column as the model (and serving) takes it: float32 numbers, strings with "" for
    missing."""
    if kind is FeatureKind.numeric:
        return frame[name].to_numpy(np.float64, na_value=np.nan).astype(np.float32)
    return frame[name].fillna(MISSING_STRING).astype(str).to_numpy(dtype=object)


def by_hand(expected: list[float], actual: list[float]) -> float:
    """PSI written out: sum of (a - e) * ln(a / e), empty bins floored."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, FLOOR), max(a, FLOOR)
        total += (a - e) * math.log(a / e)
    return total


# -- the training data against itself --------------------------------------------------------


def test_the_training_data_itself_has_no_drift() -> None:
    frame = mixed_frame(rows=2_000, seed=4)
    ref = reference(frame, FEATURES, task=Task.classification, predicted=frame["target"])
    for name, kind in FEATURES:
        bins = ref.features[name].bins
        assert sum(bins.shares) == pytest.approx(1.0, abs=1e-5)
        assert bins.rows == len(frame)
        assert psi(bins, typed(frame, name, kind)) < 1e-9, name
    assert ref.prediction is not None
    labels = frame["target"].astype(str).to_numpy(dtype=object)
    assert psi(ref.prediction, labels) < 1e-9


def test_a_sample_of_the_training_distribution_is_stable() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"x": rng.normal(50, 10, 20_000)})
    ref = reference(train, [("x", FeatureKind.numeric)], task=Task.regression, predicted=None)
    fresh = rng.normal(50, 10, 20_000).astype(np.float32)
    assert psi(ref.features["x"].bins, fresh) < 0.01


# -- known shifts ------------------------------------------------------------------------------


def test_psi_of_a_known_shift_matches_the_hand_computed_value() -> None:
    # ten equal bins over 0..10 (edges 1..9), plus the missing bin, empty in both
    bins = Bins(edges=[float(e) for e in range(1, 10)], shares=[0.1] * 10 + [0.0], rows=1_000)
    new_shares = [0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]
    column = np.concatenate(
        [np.full(round(s * 1_000), i + 0.5, dtype=np.float32) for i, s in enumerate(new_shares)]
    )
    # by hand: two bins doubled (+0.1 * ln 2 each), four halved (-0.05 * ln 0.5 each)
    expected = 2 * 0.1 * math.log(2) + 4 * (-0.05) * math.log(0.5)
    assert expected == pytest.approx(0.4 * math.log(2))
    assert psi(bins, column) == pytest.approx(expected, abs=0.01)
    assert psi(bins, column) == pytest.approx(by_hand(bins.shares, [*new_shares, 0.0]), abs=1e-12)


def test_psi_of_a_shifted_normal_matches_its_analytic_value() -> None:
    """Training N(0, 1), new data N(0.5, 1): the bins are the training deciles, so each new
    share is the N(0.5, 1) probability between two deciles of N(0, 1)."""
    rng = np.random.default_rng(7)
    train = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    ref = reference(train, [("x", FeatureKind.numeric)], task=Task.regression, predicted=None)
    deciles = norm.ppf(np.linspace(0, 1, 11))  # -inf, the nine inner deciles, +inf
    new = np.diff(norm.cdf(deciles - 0.5))
    analytic = float(np.sum((new - 0.1) * np.log(new / 0.1)))
    fresh = rng.normal(0.5, 1, 200_000).astype(np.float32)
    assert psi(ref.features["x"].bins, fresh) == pytest.approx(analytic, abs=0.01)
    assert analytic > SHIFTED  # half a standard deviation is a shift


def test_a_category_never_seen_moves_the_share_to_other() -> None:
    bins = Bins(categories=["a", "b"], shares=[0.5, 0.5, 0.0, 0.0], rows=100)
    column = np.array(["a"] * 50 + ["b"] * 25 + ["new"] * 25, dtype=object)
    assert psi(bins, column) == pytest.approx(by_hand(bins.shares, [0.5, 0.25, 0.25, 0.0]))
    assert psi(bins, column) > SHIFTED


def test_psi_with_no_rows_is_nan() -> None:
    bins = Bins(edges=[1.0], shares=[0.5, 0.5, 0.0], rows=2)
    assert math.isnan(psi(bins, np.array([], dtype=np.float32)))
    assert math.isnan(psi_of_counts(bins.shares, [0, 0, 0]))


# -- bins ---------------------------------------------------------------------------------------


def test_a_value_on_an_edge_goes_to_the_upper_bin_and_nan_to_missing() -> None:
    bins = Bins(edges=[1.0, 2.0, 3.0], shares=[0.25] * 4 + [0.0], rows=4)
    values = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 9.0, np.nan, -np.inf], dtype=np.float32)
    assert bin_index(bins, values).tolist() == [0, 1, 1, 2, 3, 3, 4, 0]
    assert bin_count(bins) == 5
    assert bin_labels(bins) == ["< 1", "1 to 2", "2 to 3", ">= 3", "missing"]


def test_an_unseen_category_goes_to_other_and_empty_to_missing() -> None:
    bins = Bins(categories=["red", "blue"], shares=[0.5, 0.5, 0.0, 0.0], rows=2)
    column = np.array(["red", "blue", "green", MISSING_STRING, "Red"], dtype=object)
    assert bin_index(bins, column).tolist() == [0, 1, 2, 3, 2]
    assert bin_labels(bins) == ["red", "blue", "other", "missing"]


def test_categories_keep_the_ten_most_common_and_the_rest_is_other() -> None:
    # category c<i> appears 20 - i times: c0 most often, c14 least
    values = [f"c{i}" for i in range(15) for _ in range(20 - i)] + [None] * 5
    frame = pd.DataFrame({"cat": values})
    ref = reference(frame, [("cat", FeatureKind.categorical)], task=Task.regression, predicted=None)
    bins = ref.features["cat"].bins
    assert bins.categories == [f"c{i}" for i in range(DRIFT_CATEGORIES)]
    total = len(values)
    rest = sum(20 - i for i in range(DRIFT_CATEGORIES, 15))
    assert bins.shares[DRIFT_CATEGORIES] == pytest.approx(rest / total, abs=1e-6)
    assert bins.shares[-1] == pytest.approx(5 / total, abs=1e-6)
    assert bins.shares[0] == pytest.approx(20 / total, abs=1e-6)


def test_numbers_with_few_values_merge_their_decile_edges() -> None:
    frame = pd.DataFrame({"n": [0.0] * 50 + [1.0] * 30 + [2.0] * 20})
    ref = reference(frame, [("n", FeatureKind.numeric)], task=Task.regression, predicted=None)
    bins = ref.features["n"].bins
    assert bins.edges == sorted(set(bins.edges or []))  # unique, ascending
    assert psi(bins, typed(frame, "n", FeatureKind.numeric)) < 1e-9


def test_prediction_bins_are_classes_by_frequency_or_deciles() -> None:
    classes = prediction_bins(Task.classification, ["no", "yes", "no", "no"])
    assert classes.categories == ["no", "yes"] and classes.shares[:2] == [0.75, 0.25]
    values = prediction_bins(Task.regression, np.arange(100, dtype=float))
    assert values.edges is not None and len(values.edges) == 9


# -- verdicts and words ------------------------------------------------------------------------


def test_verdicts_follow_the_thresholds() -> None:
    assert verdict(0.0) == "stable"
    assert verdict(SOME_CHANGE - 1e-9) == "stable"
    assert verdict(SOME_CHANGE) == "some change"
    assert verdict(SHIFTED) == "some change"  # above 0.2 is shifted, as the alert says
    assert verdict(SHIFTED + 1e-9) == "shifted"
    assert verdict(float("nan")) == "no rows"


def test_the_biggest_change_in_words() -> None:
    tenure = FeatureDrift(
        feature="tenure_months",
        kind=FeatureKind.numeric,
        psi=1.2,
        labels=["< 7", "7 to 12", ">= 12", "missing"],
        expected=[0.08, 0.42, 0.5, 0.0],
        actual=[0.41, 0.29, 0.3, 0.0],
        rows=100,
        numeric=True,
    )
    assert tenure.change == "41% of new rows are below 7, against 8% in training"
    plan = FeatureDrift(
        feature="plan",
        kind=FeatureKind.categorical,
        psi=2.0,
        labels=["basic", "fiber", "other", "missing"],
        expected=[0.6, 0.4, 0.0, 0.0],
        actual=[0.45, 0.3, 0.25, 0.0],
        rows=100,
    )
    assert (
        plan.change
        == "25% of new rows hold a category never seen in training, against 0% in training"
    )
    assert plan.describe("cases").startswith("25% of new cases")


# -- models without a stored reference (schema 1 and 2) ------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_older_models_are_compared_over_their_training_statistics(
    version: int, tmp_path: Path
) -> None:
    (tmp_path / "kiln.json").write_text(
        (TESTDATA / f"metadata-v{version}.json").read_text(encoding="utf-8")
    )
    meta = read_metadata(tmp_path)
    assert meta.reference is None
    ref = stats_reference(meta, predicted=None)
    assert ref.prediction is None and ref.features
    for feature in meta.features:
        stats = meta.feature_stats[feature.name]
        if feature.kind is FeatureKind.text or not stats.count:
            continue
        bins = ref.features[feature.name].bins
        assert sum(bins.shares) == pytest.approx(1.0, abs=1e-9), feature.name
        if feature.kind is FeatureKind.numeric and stats.histogram:
            assert bins.edges == stats.histogram["edges"][1:-1]
        else:
            assert bins.categories == list(stats.top or {})[:DRIFT_CATEGORIES]
