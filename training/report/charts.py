"""The report's charts of how well a model works, each returned as a :class:`Chart`.

Which chart suits which model is the caller's choice, by these rules: a binary classifier gets
the confusion picture, ROC and precision-recall curves; several classes get per-class bars
(:func:`class_rates_chart`) instead of curves, where lines at 100% would hide each other;
calibration only from :data:`CALIBRATION_MIN_CASES` test cases (:func:`show_calibration`);
a regressor gets estimates against truth and its error sizes in the target's own unit
(:mod:`training.report.errorcharts`). The charts of the data itself (what the data says,
drift) are in :mod:`training.report.datacharts`. All are importable from here.

Drawing, sizes, grey-safe styles and the legend checks are :mod:`training.report.chartkit`'s.
Axis labels and titles are plain words, without metric names.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from training.report.chartkit import (
    EDGE,
    GUESS,
    HATCHES,
    Chart,
    data_uri,
    done,
    drawing,
    paired_bars,
    place_legend,
    series_style,
)
from training.report.datacharts import drift_chart, evidence_chart, short
from training.report.errorcharts import (
    error_sizes_chart,
    predicted_vs_actual_chart,
    residuals_chart,
)
from training.report.words import quoted

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "CALIBRATION_MIN_CASES",
    "Chart",
    "calibration_chart",
    "class_balance_chart",
    "class_rates_chart",
    "confusion_chart",
    "data_uri",
    "drift_chart",
    "error_sizes_chart",
    "evidence_chart",
    "importance_chart",
    "precision_recall_chart",
    "predicted_vs_actual_chart",
    "residuals_chart",
    "roc_chart",
    "show_calibration",
]

# Fewer test cases than this and a calibration chart shows noise: 69 cases in 10 bins zigzag
# from 0% to 100%. The report says why it is not shown instead.
CALIBRATION_MIN_CASES = 300
CALIBRATION_MIN_BIN = 10  # a bin with fewer cases is left out of the calibration chart
NEAR_PERFECT = 0.99  # an area from which a curve runs along the top edge, which the chart says


def show_calibration(n_test: int) -> bool:
    """Whether a calibration chart on ``n_test`` test cases says more than noise."""
    return n_test >= CALIBRATION_MIN_CASES


def _percent(ax: Axes, axis: str = "xy") -> None:
    from matplotlib.ticker import PercentFormatter

    for name in axis:
        getattr(ax, f"{name}axis").set_major_formatter(PercentFormatter(1.0, decimals=0))


def _percent_axes(ax: Axes) -> None:
    # a little room above 100% keeps a curve along the top visible, not merged with the edge
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(0, 1.06)
    ax.set_yticks(np.linspace(0, 1, 6))
    _percent(ax)


def _near_perfect(ax: Axes, x: float, ha: str, curves: int) -> None:
    what = "the curve runs" if curves == 1 else "the curves run"
    ax.text(
        x,
        0.06,
        f"Near perfect: {what}\nalong the top edge",
        transform=ax.transAxes,
        ha=ha,
        va="bottom",
        fontsize=10,
        style="italic",
    )


def confusion_chart(
    matrix: Sequence[Sequence[int]], classes: Sequence[Any], positive: Any = None
) -> Chart:
    """Counts of each (true, answered) pair; a binary model's squares also say what they are
    (caught, missed, false alarm, right), with the share of the true answer's cases."""
    counts = np.asarray(matrix, dtype=float)
    k = len(classes)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    words = _binary_words(list(classes), positive) if k == 2 else None
    title = "Right and wrong answers on the test cases"
    with drawing("confusion", title) as d:
        ax = d.fig.subplots()
        ax.grid(False)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                text = f"{int(counts[i, j]):,}"
                if words is not None:
                    text += f"\n{words[i][j]} ({shares[i, j]:.0%})"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=(12 if words else 13) if k <= 4 else 9,
                    fontweight="bold",
                    color="white" if shares[i, j] > 0.55 else "#1a1a1a",
                )
        names = [short(c) for c in classes]
        ax.set_xticks(range(k), names, rotation=0 if k <= 4 else 45, ha="center")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("What the model answered")
        ax.set_ylabel("The true answer")
        ax.set_title(title)
    return done(d)


def _binary_words(classes: list[Any], positive: Any) -> list[list[str]]:
    """Each square's word, rows true and columns answered, in ``classes`` order."""
    if positive not in classes:
        return [["right", "wrong"], ["wrong", "right"]]
    if classes.index(positive) == 1:
        return [["right", "false alarm"], ["missed", "caught"]]
    return [["caught", "missed"], ["false alarm", "right"]]


def class_balance_chart(
    classes: Sequence[Any], holdout_counts: Sequence[int], train_counts: Sequence[int] | None
) -> Chart:
    k = len(classes)
    groups: list[tuple[str, Sequence[int]]] = []
    if train_counts is not None:
        groups.append(("training", train_counts))
    groups.append(("test", holdout_counts))
    title = "How common each answer is"
    with drawing("class_balance", title) as d:
        ax = d.fig.subplots()
        width = 0.8 / len(groups)
        x = np.arange(k)
        for n, (name, counts) in enumerate(groups):
            total = max(sum(counts), 1)
            offset = (n - (len(groups) - 1) / 2) * width
            bars = ax.bar(
                x + offset,
                [c / total for c in counts],
                width,
                color=series_style(n)["color"],
                alpha=0.9 if n == 0 else 0.45,
                edgecolor=EDGE,
                hatch=HATCHES[n],
                label=f"{name} ({total:,} cases)",
            )
            ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=2, fontsize=9)
        ax.set_xticks(x, [short(c) for c in classes])
        ax.set_ylim(0, 1.15)
        _percent(ax, "y")
        ax.set_ylabel("Share of cases")
        ax.set_xlabel("Answer")
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        place_legend(ax)
    return done(d)


def class_rates_chart(matrix: Sequence[Sequence[int]], classes: Sequence[Any]) -> Chart:
    """For each class: the share of its cases the model found, and how often it was right when
    it gave that answer, each bar labelled with its counts ("45 of 48")."""
    counts = np.asarray(matrix, dtype=int)
    k = len(classes)
    right = np.diag(counts)
    truly, said = counts.sum(axis=1), counts.sum(axis=0)
    kinds = [
        ("found (of its true cases)", right, truly),
        ("right when it says so", right, said),
    ]
    title = "How well it does on each answer"
    with drawing("class_rates", title) as d:
        ax = d.fig.subplots()
        x = np.arange(k)
        for n, (label, hits, totals) in enumerate(kinds):
            rates = np.divide(hits, np.maximum(totals, 1)).astype(float)
            bars = paired_bars(ax, x, n, rates, label, width=0.38)
            words = [
                f"{h:,} of {t:,}" if t else "never said" for h, t in zip(hits, totals, strict=True)
            ]
            ax.bar_label(
                bars,
                labels=words,
                padding=2,
                fontsize=9 if k <= 4 else 8,
                rotation=0 if k <= 4 else 90,
            )
        ax.set_xticks(x, [short(c) for c in classes], rotation=0 if k <= 5 else 30)
        ax.set_ylim(0, 1.16 if k <= 4 else 1.3)
        ax.set_yticks(np.linspace(0, 1, 6))
        _percent(ax, "y")
        ax.set_ylabel("Share of cases")
        ax.set_xlabel("Answer")
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        place_legend(ax, ncol=2)
    return done(d)


def _columns(
    y_true: Sequence[Any], scores: np.ndarray, classes: Sequence[Any], positive: Any
) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """(class, is that class, score of that class) for the positive class, or each class."""
    truth = np.asarray(y_true, dtype=object)
    picked = [positive] if len(classes) == 2 and positive is not None else list(classes)
    return [(c, truth == c, scores[:, list(classes).index(c)]) for c in picked]


def _curve(ax: Axes, x: np.ndarray, y: np.ndarray, n: int, label: str) -> None:
    """A curve in the ``n``-th style, with markers at even distances along it and staggered
    from one curve to the next, so curves that coincide (at 100%) still each show theirs."""
    dx, dy = np.diff(x), np.diff(y)
    along = np.concatenate([[0.0], np.cumsum(np.hypot(dx, dy))])
    steps = np.linspace(0.0, along[-1], 400) if along[-1] > 0 else along
    x, y = np.interp(steps, along, x), np.interp(steps, along, y)  # even points along the path
    style = {**series_style(n), "lw": 2.2, "markersize": 6.5}
    ax.plot(x, y, label=label, clip_on=False, markevery=(0.02 + 0.05 * n, 0.15), **style)


def roc_chart(
    y_true: Sequence[Any], scores: np.ndarray, classes: Sequence[Any], positive: Any = None
) -> Chart:
    from sklearn.metrics import auc, roc_curve

    title = "Finding cases against raising false alarms"
    with drawing("roc", title) as d:
        ax = d.fig.subplots()
        areas = []
        for n, (c, truth, score) in enumerate(_columns(y_true, scores, classes, positive)):
            if truth.all() or not truth.any():
                continue
            fpr, tpr, _ = roc_curve(truth, score)
            areas.append(auc(fpr, tpr))
            _curve(ax, fpr, tpr, n, quoted(short(c)))
        ax.plot([0, 1], [0, 1], ls="--", color=GUESS, lw=1.5, label="guessing")
        _percent_axes(ax)
        if areas and min(areas) >= NEAR_PERFECT:
            _near_perfect(ax, 0.97, "right", len(areas))
        ax.set_xlabel("False alarms (share of other cases flagged)")
        ax.set_ylabel("Found (share of cases caught)")
        ax.set_title(title)
        place_legend(ax, order=("center right", "lower right", "upper center", "center"))
    return done(d)


def precision_recall_chart(
    y_true: Sequence[Any], scores: np.ndarray, classes: Sequence[Any], positive: Any = None
) -> Chart:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    title = "Catching more against being right"
    with drawing("precision_recall", title) as d:
        ax = d.fig.subplots()
        columns = _columns(y_true, scores, classes, positive)
        areas = []
        for n, (c, truth, score) in enumerate(columns):
            if not truth.any():
                continue
            precision, recall, _ = precision_recall_curve(truth, score)
            areas.append(average_precision_score(truth, score))
            # drawn as the steps it is: each recall level keeps its precision until the next
            steps_x = np.repeat(recall, 2)[1:]
            steps_y = np.repeat(precision, 2)[:-1]
            _curve(ax, steps_x, steps_y, n, quoted(short(c)))
            if len(columns) == 1:
                how_common = f"guessing (how common {quoted(short(c))} is)"
                ax.axhline(truth.mean(), ls="--", lw=1.5, color=GUESS, label=how_common)
        _percent_axes(ax)
        if areas and min(areas) >= NEAR_PERFECT:
            _near_perfect(ax, 0.03, "left", len(areas))
        ax.set_xlabel("Found (share of cases caught)")
        ax.set_ylabel("Right when it flags a case")
        ax.set_title(title)
        place_legend(ax)
    return done(d)


def calibration_chart(
    y_true: Sequence[Any],
    probabilities: np.ndarray,
    classes: Sequence[Any],
    positive: Any = None,
    bins: int = 10,
) -> Chart:
    """Cases grouped by the chance the model gave; each point is how often it happened. Bins
    under :data:`CALIBRATION_MIN_BIN` cases are left out. Draw it only where
    :func:`show_calibration` says so."""
    title = "Can its percentages be taken at face value?"
    with drawing("calibration", title) as d:
        ax = d.fig.subplots()
        ax.plot([0, 1], [0, 1], ls="--", color=GUESS, lw=1.5, label="taken at face value")
        edges = np.linspace(0, 1, bins + 1)
        for n, (c, truth, score) in enumerate(_columns(y_true, probabilities, classes, positive)):
            which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
            said, happened = [], []
            for b in range(bins):
                inside = which == b
                if inside.sum() >= CALIBRATION_MIN_BIN:
                    said.append(score[inside].mean())
                    happened.append(truth[inside].mean())
            style = {**series_style(n), "lw": 2, "markersize": 7}
            ax.plot(said, happened, label=quoted(short(c)), clip_on=False, **style)
        _percent_axes(ax)
        ax.set_xlabel("Chance the model gave")
        ax.set_ylabel("How often it happened")
        ax.set_title(title)
        place_legend(ax, order=("upper left", "lower right", "center left", "center right"))
    return done(d)


def importance_chart(
    importance: Sequence[tuple[str, float, float]], score_name: str, limit: int = 15
) -> Chart:
    """Features ranked by how much the score drops when each is shuffled (whiskers: spread)."""
    ranked = sorted(importance, key=lambda f: -f[1])[:limit][::-1]
    title = "Which features it leans on"
    with drawing("importance", title, height_mm=min(105.0, 40.0 + 6.0 * len(ranked))) as d:
        ax = d.fig.subplots()
        names = [short(f[0], 28) for f in ranked]
        values = [max(f[1], 0.0) for f in ranked]
        errors = [f[2] for f in ranked]
        ax.barh(names, values, xerr=errors, color=series_style(0)["color"], alpha=0.85, capsize=3)
        ax.grid(axis="y", visible=False)
        # the score's words vary in length: wrapped, the label keeps within the width
        ax.set_xlabel(textwrap.fill(f"Drop in {score_name} when the feature is shuffled", 60))
        ax.set_title(title)
        ax.set_xlim(left=0)
    return done(d)
