"""The report's charts, drawn from real models' test predictions (sklearn's datasets, small and
fast models): each is a PNG of the print size, its legend covers no drawn datum, its series
differ in more than colour, and its labels carry the counts a reader checks them by.

The legend checker itself is tested on figures built to fail it (a legend placed over a line,
points, bars, a label), so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split

from kiln.artifact import EvidenceBand, FeatureKind, Task
from training.evidence import evidence
from training.report import charts
from training.report.chartcheck import legend_overlaps
from training.report.chartkit import (
    DPI,
    HEIGHT_MM,
    MM_PER_INCH,
    WIDTH_MM,
    Chart,
    done,
    drawing,
    indistinct_in_grey,
    place_legend,
    series_style,
)
from training.report.words import number


class Fitted:
    """A model's test predictions, as holdout.json keeps them."""

    def __init__(self, X: np.ndarray, y: np.ndarray, model: Any) -> None:
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
        model.fit(X_train, y_train)
        self.y_true = list(y_test)
        self.y_pred = model.predict(X_test)
        self.classes = list(getattr(model, "classes_", []))
        self.scores = model.predict_proba(X_test) if self.classes else None
        self.X_train = pd.DataFrame(X_train)
        self.y_train = pd.Series(y_train)

    @property
    def matrix(self) -> list[list[int]]:
        return confusion_matrix(self.y_true, self.y_pred, labels=self.classes).tolist()


@pytest.fixture(scope="module")
def binary() -> Fitted:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 0, "malignant", "benign").astype(object)
    return Fitted(X, labels, LogisticRegression(max_iter=5000))


@pytest.fixture(scope="module")
def wine() -> Fitted:
    X, y = load_wine(return_X_y=True)
    labels = np.array(["barolo", "grignolino", "barbera"], dtype=object)[y]
    return Fitted(X, labels, LogisticRegression(max_iter=5000))


@pytest.fixture(scope="module")
def diabetes() -> Fitted:
    X, y = load_diabetes(return_X_y=True)
    return Fitted(X, y, Ridge(alpha=0.1))


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _pixels(mm: float) -> int:
    return round(mm / MM_PER_INCH * DPI)


def _all_charts(binary: Fitted, wine: Fitted, diabetes: Fitted) -> dict[str, Chart]:
    assert binary.scores is not None and wine.scores is not None
    frame = pd.DataFrame(load_wine(as_frame=True).data)
    target = pd.Series(
        np.asarray(["barolo", "grignolino", "barbera"], dtype=object)[load_wine().target]
    )
    bands = evidence(
        frame,
        target,
        [("alcohol", FeatureKind.numeric)],
        Task.classification,
        ["barbera", "barolo", "grignolino"],
        None,
    )[0].bands
    return {
        "confusion": charts.confusion_chart(binary.matrix, binary.classes, "malignant"),
        "class_balance": charts.class_balance_chart(binary.classes, [80, 148], [132, 209]),
        "roc": charts.roc_chart(binary.y_true, binary.scores, binary.classes, "malignant"),
        "precision_recall": charts.precision_recall_chart(
            binary.y_true, binary.scores, binary.classes, "malignant"
        ),
        "calibration": charts.calibration_chart(
            binary.y_true, binary.scores, binary.classes, "malignant"
        ),
        "roc_3_classes": charts.roc_chart(wine.y_true, wine.scores, wine.classes),
        "class_rates": charts.class_rates_chart(wine.matrix, wine.classes),
        "importance": charts.importance_chart(
            [(f"feature {i}", 0.02 * i, 0.005) for i in range(12)], "accuracy"
        ),
        "estimates": charts.predicted_vs_actual_chart(
            diabetes.y_true, diabetes.y_pred, "disease progression"
        ),
        "error_sizes": charts.error_sizes_chart(
            diabetes.y_true, diabetes.y_pred, "disease progression", "points"
        ),
        "residuals": charts.residuals_chart(diabetes.y_true, diabetes.y_pred, "progression"),
        "evidence_3_classes": charts.evidence_chart(
            "alcohol", bands, ["barbera", "barolo", "grignolino"]
        ),
        "drift": charts.drift_chart(
            "tenure",
            ["under 6", "6 to 12", "12 to 24", "over 24", "missing"],
            [0.2, 0.3, 0.3, 0.2, 0.0],
            [0.4, 0.3, 0.2, 0.1, 0.0],
        ),
    }


@pytest.fixture(scope="module")
def drawn(binary: Fitted, wine: Fitted, diabetes: Fitted) -> dict[str, Chart]:
    return _all_charts(binary, wine, diabetes)


NAMES = [
    "confusion", "class_balance", "roc", "precision_recall", "calibration", "roc_3_classes",
    "class_rates", "importance", "estimates", "error_sizes", "residuals", "evidence_3_classes",
    "drift",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_each_chart_is_a_print_sized_png_whose_legend_covers_nothing(
    drawn: dict[str, Chart], name: str
) -> None:
    chart = drawn[name]
    width, height = _png_size(chart.png)
    assert width == _pixels(WIDTH_MM)  # 170 mm: the A4 text width
    assert height <= _pixels(HEIGHT_MM)  # two, with captions, fit one page
    assert chart.overlaps == ()
    assert chart.cut_off == ()  # no label runs past the edge
    assert chart.title in chart.words
    assert chart.uri.startswith("data:image/png;base64,")


@pytest.mark.parametrize("name", NAMES)
def test_series_differ_in_more_than_colour(drawn: dict[str, Chart], name: str) -> None:
    """Grey print: entries differ in line style, marker or hatching (or the chart has none)."""
    assert indistinct_in_grey(drawn[name]) == []


def test_several_curves_each_have_their_line_style_and_marker(drawn: dict[str, Chart]) -> None:
    lines = [e for e in drawn["roc_3_classes"].legend if e.label != "guessing"]
    assert [e.label for e in lines] == ["'barbera'", "'barolo'", "'grignolino'"]
    assert len({e.linestyle for e in lines}) == 3
    assert len({e.marker for e in lines}) == 3
    assert all(e.marker for e in lines)


def test_near_perfect_curves_say_so(binary: Fitted) -> None:
    """Curves along the top edge are said to be there, not left to hide each other."""
    truth = np.array(binary.y_true, dtype=object)
    perfect = np.c_[truth == "benign", truth == "malignant"].astype(float)
    for draw in (charts.roc_chart, charts.precision_recall_chart):
        near = draw(binary.y_true, perfect, binary.classes, "malignant")
        assert any(w.startswith("Near perfect") for w in near.words), draw.__name__
    noisy = np.random.default_rng(0).random(len(truth))
    plain = charts.roc_chart(binary.y_true, np.c_[1 - noisy, noisy], binary.classes, "malignant")
    assert not any(w.startswith("Near perfect") for w in plain.words)
    assert plain.overlaps == ()


def test_binary_confusion_names_each_square_with_its_count(binary: Fitted) -> None:
    chart = charts.confusion_chart(binary.matrix, binary.classes, "malignant")
    (tn, fp), (fn, tp) = binary.matrix  # rows true, columns answered: benign, malignant
    cells = [w for w in chart.words if "\n" in w]
    assert cells == [
        f"{tn:,}\nright ({tn / (tn + fp):.0%})",
        f"{fp:,}\nfalse alarm ({fp / (tn + fp):.0%})",
        f"{fn:,}\nmissed ({fn / (fn + tp):.0%})",
        f"{tp:,}\ncaught ({tp / (fn + tp):.0%})",
    ]


def test_class_rates_label_each_bar_with_its_counts(wine: Fitted) -> None:
    chart = charts.class_rates_chart(wine.matrix, wine.classes)
    m = np.asarray(wine.matrix)
    found = [f"{m[i, i]} of {m[i].sum()}" for i in range(3)]
    right = [f"{m[i, i]} of {m[:, i].sum()}" for i in range(3)]
    for label in found + right:
        assert label in chart.words
    assert {e.label for e in chart.legend} == {"found (of its true cases)", "right when it says so"}


def test_a_class_never_answered_says_so_instead_of_a_rate() -> None:
    chart = charts.class_rates_chart([[5, 0], [3, 0]], ["a", "b"])
    assert "never said" in chart.words
    assert chart.overlaps == ()


def test_calibration_is_shown_from_a_few_hundred_test_cases() -> None:
    assert charts.CALIBRATION_MIN_CASES == 300
    assert not charts.show_calibration(69)  # the penguins' test set of the issue
    assert not charts.show_calibration(299)
    assert charts.show_calibration(300)


def test_error_sizes_are_in_the_targets_unit(diabetes: Fitted) -> None:
    off = np.abs(np.asarray(diabetes.y_true) - diabetes.y_pred)
    chart = charts.error_sizes_chart(diabetes.y_true, diabetes.y_pred, "stay", unit="days")
    assert "Off by (days)" in chart.words
    half = np.quantile(off, 0.5)
    assert f"half are off by less than {number(half)}" in chart.words
    without = charts.error_sizes_chart(diabetes.y_true, diabetes.y_pred, "disease progression")
    assert "Off by (in disease progression)" in without.words
    assert not any("residual" in w.lower() for w in [*chart.words, *without.words])


def test_evidence_bars_carry_their_case_counts(diabetes: Fitted) -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    found = evidence(X, y, [("bmi", FeatureKind.numeric)], Task.regression, None, None)
    bands = found[0].bands
    chart = charts.evidence_chart("body mass index", bands, outcome="average progression")
    for band in bands:
        cases = f"{band.rows:,} case" + ("" if band.rows == 1 else "s")
        assert any(w.endswith(cases) and w.startswith(band.label[:10]) for w in chart.words)
    assert "Average progression, by body mass index" in chart.words
    assert chart.overlaps == ()


def test_evidence_of_a_binary_model_shows_the_positive_share_in_one_series() -> None:
    bands = [
        EvidenceBand(label="under 6", rows=120, shares=[0.59, 0.41]),
        EvidenceBand(label="6 to 24", rows=300, shares=[0.75, 0.25]),
        EvidenceBand(label="over 24", rows=1, shares=[0.0, 1.0]),
    ]
    chart = charts.evidence_chart("months subscribed", bands, ["no", "yes"], focus="yes")
    assert chart.legend == ()  # one series, labelled on its bars
    assert {"41%", "25%", "100%"} <= set(chart.words)
    assert "over 24\n1 case" in chart.words  # singular
    assert "Share that are 'yes', by months subscribed" in chart.words
    as_dicts = charts.evidence_chart(
        "months subscribed",
        [{"label": b.label, "rows": b.rows, "shares": b.shares, "mean": None} for b in bands],
        ["no", "yes"],
    )
    assert as_dicts.words == chart.words  # the second class is the focus when none is given


# -- the legend checker --------------------------------------------------------------------


def _through_the_middle(ax: Any) -> None:
    ax.plot([0, 1], [0.5, 0.5], label="level")


def _points_in_the_middle(ax: Any) -> None:
    ax.scatter([0.5], [0.5], s=30, label="one case")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def _a_tall_bar(ax: Any) -> None:
    ax.bar([0.5], [1.0], width=0.4, label="bar")
    ax.set_xlim(0, 1)


def _a_label(ax: Any) -> None:
    ax.plot([0, 0.1], [0, 0.1], label="short")
    ax.text(0.5, 0.5, "a label here", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


@pytest.mark.parametrize(
    ("draw", "what"),
    [
        (_through_the_middle, "line 'level'"),
        (_points_in_the_middle, "points 'one case'"),
        (_a_tall_bar, "bar"),
        (_a_label, "text 'a label here'"),
    ],
)
def test_the_checker_finds_a_legend_over_drawn_data(draw: Callable[[Any], None], what: str) -> None:
    with drawing("test", "covered") as d:
        ax = d.fig.subplots()
        draw(ax)
        ax.legend(loc="center")
        found = legend_overlaps(d.fig)
        assert any(f.startswith(f"legend over {what}") for f in found), found
        if draw in (_through_the_middle, _points_in_the_middle):
            ax.get_legend().set_loc("upper left")  # the same legend in an empty corner
            assert legend_overlaps(d.fig) == []
            ax.get_legend().set_loc("center")
    assert done(d).overlaps  # the chart records what was found when it was saved


def test_a_segment_crossing_the_legend_counts_though_no_point_is_inside() -> None:
    with drawing("test", "diagonal") as d:
        ax = d.fig.subplots()
        ax.plot([0, 1], [0, 1], label="guessing")  # two points, both far from the centre
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="center")
    assert done(d).overlaps == ("legend over line 'guessing'",)


def test_place_legend_picks_an_empty_corner_or_goes_under_the_axes() -> None:
    with drawing("test", "corner") as d:
        ax = d.fig.subplots()
        ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 0.2, label="rises early")
        place_legend(ax)
    chart = done(d)
    assert chart.overlaps == ()
    with drawing("test", "full") as d:
        ax = d.fig.subplots()
        x = np.linspace(0, 1, 200)
        for n, level in enumerate([0.05, 0.5, 0.95]):
            ax.plot(x, np.full_like(x, level), label=f"level {n}", **series_style(n))
        ax.plot([0.5, 0.5], [0, 1], label="across")
        ax.set_ylim(0, 1)
        place_legend(ax)
        assert ax.get_legend() is None and len(d.fig.legends) == 1  # moved under the axes
    assert done(d).overlaps == ()


def test_charts_draw_on_their_own_canvas() -> None:
    """No pyplot: drawing leaves matplotlib's global figure manager empty."""
    import matplotlib._pylab_helpers as helpers

    charts.class_rates_chart([[3, 1], [0, 4]], ["a", "b"])
    assert helpers.Gcf.get_all_fig_managers() == []


@pytest.mark.parametrize(
    "draw",
    [
        lambda: charts.evidence_chart("x", [], ["a", "b"]),
        lambda: charts.evidence_chart(
            "loss",
            [{"label": "a", "rows": 5, "mean": -3.0}, {"label": "b", "rows": 2, "mean": -1.0}],
        ),
        lambda: charts.error_sizes_chart([1.0, 2.0], [1.0, 2.0], "stay"),
        lambda: charts.roc_chart(["a"] * 3, np.array([[0.9, 0.1]] * 3), ["a", "b"], "b"),
        lambda: charts.class_rates_chart([[0, 0], [0, 0]], [True, False]),
        lambda: charts.confusion_chart(
            np.eye(7, dtype=int).tolist(), [f"kind {i}" for i in range(7)]
        ),
        lambda: charts.drift_chart("f", ["a"], [0.0], [0.0]),
    ],
    ids=[
        "no bands",
        "negative means",
        "no errors",
        "no positive case",
        "no cases",
        "7 classes",
        "empty bins",
    ],
)
def test_degenerate_data_still_draws_without_warnings(draw: Callable[[], Chart]) -> None:
    chart = draw()  # warnings are errors in this suite
    assert _png_size(chart.png)[0] == _pixels(WIDTH_MM)
    assert chart.overlaps == ()
    assert chart.cut_off == ()


def test_a_label_too_long_for_the_width_is_found_cut_off() -> None:
    long = "Drop in how well it tells the answers apart when the feature is shuffled, " * 2
    with drawing("test", "long") as d:
        ax = d.fig.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel(long)
    assert done(d).cut_off == (long,)
    chart = charts.importance_chart([("contract", 0.17, 0.01)], long.strip())
    assert chart.cut_off == ()  # wrapped
