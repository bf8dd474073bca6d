"""The report's charts: matplotlib figures rendered to PNG bytes, embedded as ``data:`` URIs.

Figures are drawn with matplotlib's object API on an Agg canvas created in each function:
nothing touches pyplot or the process-wide backend, so importing this module, or drawing from
a thread, changes no global state. Titles and axis labels are plain words, fonts are large.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "calibration_chart",
    "class_balance_chart",
    "confusion_chart",
    "data_uri",
    "drift_chart",
    "importance_chart",
    "precision_recall_chart",
    "predicted_vs_actual_chart",
    "residuals_chart",
    "roc_chart",
]

COLOURS = ("#1f5aa6", "#d9541e", "#2a9d55", "#8e44ad", "#c0392b", "#7f8c8d", "#b7950b")
GUESS = "#9a9a9a"
STYLE: dict[Any, Any] = {
    "font.size": 13,
    "axes.titlesize": 15,
    "axes.titleweight": "bold",
    "axes.labelsize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 11,
    "legend.frameon": False,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
}
DPI = 110
MAX_POINTS = 5_000  # scatter plots draw at most this many holdout rows


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@contextmanager
def _figure(width: float = 6.8, height: float = 4.6) -> Iterator[tuple[Figure, list[bytes]]]:
    """A figure to draw on; its PNG is appended to the list when the block ends."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    result: list[bytes] = []
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)  # the Agg canvas, for this figure only
        yield fig, result
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    result.append(buffer.getvalue())


def _short(label: Any, limit: int = 18) -> str:
    text = str(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def confusion_chart(matrix: Sequence[Sequence[int]], classes: Sequence[Any]) -> bytes:
    counts = np.asarray(matrix, dtype=float)
    k = len(classes)
    size = min(3.6 + 0.5 * k, 8.0)
    with _figure(size + 1.2, size) as (fig, png):
        ax = fig.subplots()
        ax.grid(False)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                dark = shares[i, j] > 0.55
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j]):,}",
                    ha="center",
                    va="center",
                    fontsize=16 if k <= 4 else 12,
                    fontweight="bold",
                    color="white" if dark else "#1a1a1a",
                )
        names = [_short(c) for c in classes]
        ax.set_xticks(range(k), names, rotation=0 if k <= 4 else 45, ha="center")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("What the model answered")
        ax.set_ylabel("The true answer")
        ax.set_title("Right and wrong answers on the test cases")
    return png[0]


def _positive_columns(
    y_true: Sequence[Any], scores: np.ndarray, classes: Sequence[Any], positive: Any
) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """(class, is that class, score of that class) for the positive class, or each class."""
    truth = np.asarray(y_true, dtype=object)
    picked = [positive] if len(classes) == 2 and positive is not None else list(classes)
    return [(c, truth == c, scores[:, list(classes).index(c)]) for c in picked]


def roc_chart(
    y_true: Sequence[Any], scores: np.ndarray, classes: Sequence[Any], positive: Any = None
) -> bytes:
    from sklearn.metrics import auc, roc_curve

    with _figure() as (fig, png):
        ax = fig.subplots()
        columns = _positive_columns(y_true, scores, classes, positive)
        for n, (c, truth, score) in enumerate(columns):
            if truth.all() or not truth.any():
                continue
            fpr, tpr, _ = roc_curve(truth, score)
            colour = COLOURS[n % len(COLOURS)]
            label = f"{_short(c)}: area {auc(fpr, tpr):.2f}"
            ax.plot(fpr, tpr, lw=2.5, color=colour, label=label)
            if len(columns) == 1:
                ax.fill_between(fpr, tpr, alpha=0.08, color=colour)
        ax.plot([0, 1], [0, 1], ls="--", color=GUESS, lw=1.5, label="guessing")
        _percent_axes(ax)
        ax.set_xlabel("False alarms (share of other cases flagged)")
        ax.set_ylabel("Found (share of cases caught)")
        ax.set_title("Finding cases vs raising false alarms (ROC)")
        ax.legend(loc="lower right")
    return png[0]


def precision_recall_chart(
    y_true: Sequence[Any], scores: np.ndarray, classes: Sequence[Any], positive: Any = None
) -> bytes:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    with _figure() as (fig, png):
        ax = fig.subplots()
        for n, (c, truth, score) in enumerate(_positive_columns(y_true, scores, classes, positive)):
            if not truth.any():
                continue
            precision, recall, _ = precision_recall_curve(truth, score)
            colour = COLOURS[n % len(COLOURS)]
            ap = average_precision_score(truth, score)
            label = f"{_short(c)}: average precision {ap:.2f}"
            ax.step(recall, precision, where="post", lw=2.5, color=colour, label=label)
            ax.axhline(truth.mean(), ls="--", lw=1.5, color=colour, alpha=0.6)
        ax.plot([], [], ls="--", color=GUESS, label="guessing (how common it is)")
        _percent_axes(ax)
        ax.set_xlabel("Found (share of cases caught)")
        ax.set_ylabel("Right when it flags a case")
        ax.set_title("Catching more vs being right (precision-recall)")
        ax.legend(loc="lower left")
    return png[0]


def calibration_chart(
    y_true: Sequence[Any],
    probabilities: np.ndarray,
    classes: Sequence[Any],
    positive: Any = None,
    bins: int = 10,
) -> bytes:
    with _figure() as (fig, png):
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], ls="--", color=GUESS, lw=1.5, label="perfectly honest")
        columns = _positive_columns(y_true, probabilities, classes, positive)
        for n, (c, truth, score) in enumerate(columns):
            edges = np.linspace(0, 1, bins + 1)
            which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
            said, happened, sizes = [], [], []
            for b in range(bins):
                inside = which == b
                if inside.sum() == 0:
                    continue
                said.append(score[inside].mean())
                happened.append(truth[inside].mean())
                sizes.append(inside.sum())
            colour = COLOURS[n % len(COLOURS)]
            area = 30 + 250 * np.asarray(sizes) / max(sizes)
            ax.plot(said, happened, lw=2, color=colour, label=_short(c))
            ax.scatter(said, happened, s=area, color=colour, alpha=0.8, zorder=3)
        _percent_axes(ax)
        ax.set_xlabel("Chance the model gave")
        ax.set_ylabel("How often it happened")
        ax.set_title("Can its percentages be taken at face value?")
        ax.legend(loc="upper left")
    return png[0]


def importance_chart(
    importance: Sequence[tuple[str, float, float]], score_name: str, limit: int = 15
) -> bytes:
    ranked = sorted(importance, key=lambda f: -f[1])[:limit][::-1]
    height = 1.5 + 0.36 * len(ranked)
    with _figure(6.8, max(height, 3.0)) as (fig, png):
        ax = fig.subplots()
        names = [_short(f[0], 24) for f in ranked]
        values = [max(f[1], 0.0) for f in ranked]
        errors = [f[2] for f in ranked]
        ax.barh(names, values, xerr=errors, color=COLOURS[0], alpha=0.85, capsize=3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"Drop in {score_name} when the feature is shuffled")
        ax.set_title("Which features it leans on")
        ax.set_xlim(left=0)
    return png[0]


def class_balance_chart(
    classes: Sequence[Any], holdout_counts: Sequence[int], train_counts: Sequence[int] | None
) -> bytes:
    k = len(classes)
    groups: list[tuple[str, Sequence[int]]] = []
    if train_counts is not None:
        groups.append(("training", train_counts))
    groups.append(("test", holdout_counts))
    with _figure(min(max(5.6, 2.2 + 1.2 * k), 9.0), 4.2) as (fig, png):
        ax = fig.subplots()
        width = 0.8 / len(groups)
        x = np.arange(k)
        for n, (name, counts) in enumerate(groups):
            total = max(sum(counts), 1)
            shares = [c / total for c in counts]
            offset = (n - (len(groups) - 1) / 2) * width
            bars = ax.bar(
                x + offset,
                shares,
                width,
                color=COLOURS[n],
                label=f"{name} ({total:,} cases)",
            )
            ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=2, fontsize=11)
        ax.set_xticks(x, [_short(c) for c in classes])
        ax.set_ylim(0, 1.12)
        ax.yaxis.set_major_formatter(_percent_formatter())
        ax.set_ylabel("Share of cases")
        ax.set_xlabel("Answer")
        ax.set_title("How common each answer is")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper right")
    return png[0]


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)


def _percent_axes(ax: Axes) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(_percent_formatter())
    ax.yaxis.set_major_formatter(_percent_formatter())


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(arrays[0])
    if n <= MAX_POINTS:
        return arrays
    keep = np.random.default_rng(0).choice(n, MAX_POINTS, replace=False)
    return tuple(a[keep] for a in arrays)


def predicted_vs_actual_chart(
    y_true: Sequence[float], y_pred: Sequence[float], target: str
) -> bytes:
    truth, guess = _thin(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float))
    low = float(min(truth.min(), guess.min()))
    high = float(max(truth.max(), guess.max()))
    with _figure(6.0, 5.4) as (fig, png):
        ax = fig.subplots()
        ax.scatter(truth, guess, s=28, alpha=0.6, color=COLOURS[0], edgecolor="none")
        ax.plot([low, high], [low, high], ls="--", color=GUESS, lw=1.5, label="perfect estimate")
        ax.set_xlabel(f"True {target}")
        ax.set_ylabel(f"Estimated {target}")
        ax.set_title("Estimates against the true values")
        ax.legend(loc="upper left")
        ax.set_aspect("equal", adjustable="datalim")
    return png[0]


def residuals_chart(y_true: Sequence[float], y_pred: Sequence[float], target: str) -> bytes:
    from matplotlib.ticker import MaxNLocator

    truth, guess = _thin(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float))
    errors = truth - guess
    with _figure(9.0, 4.4) as (fig, png):
        left, right = fig.subplots(1, 2, width_ratios=[3, 2])
        scatter: Axes = left
        scatter.scatter(guess, errors, s=28, alpha=0.6, color=COLOURS[0], edgecolor="none")
        scatter.axhline(0, ls="--", color=GUESS, lw=1.5)
        scatter.set_xlabel(f"Estimated {target}")
        scatter.set_ylabel("True minus estimated")
        scatter.set_title("How far off, by estimate")
        right.hist(errors, bins=min(30, max(8, len(errors) // 10)), color=COLOURS[1], alpha=0.85)
        right.axvline(0, ls="--", color=GUESS, lw=1.5)
        right.yaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel("True minus estimated")
        right.set_ylabel("Number of cases")
        right.set_title("How often, by size")
    return png[0]


def drift_chart(
    feature: str,
    labels: Sequence[str],
    training: Sequence[float],
    new: Sequence[float],
    reference: str = "training",
) -> bytes:
    """Training share against new share of each bin, side by side. The new bars are hatched
    and both have dark edges, so the two read apart in print and in grey too. Bins empty in
    both are left out (most features have no missing values)."""
    shown = [i for i in range(len(labels)) if training[i] > 0 or new[i] > 0]
    k = len(shown)
    with _figure(min(max(6.0, 2.4 + 0.75 * k), 9.5), 4.6) as (fig, png):
        ax = fig.subplots()
        x = np.arange(k)
        width = 0.4
        ax.bar(
            x - width / 2,
            [training[i] for i in shown],
            width,
            color=COLOURS[0],
            edgecolor="#1a1a1a",
            label=reference,
        )
        ax.bar(
            x + width / 2,
            [new[i] for i in shown],
            width,
            color="#f3c9b4",
            edgecolor="#1a1a1a",
            hatch="//",
            label="new data",
        )
        names = [_short(labels[i], 16) for i in shown]
        ax.set_xticks(x, names, rotation=0 if k <= 4 else 35, ha="center" if k <= 4 else "right")
        ax.yaxis.set_major_formatter(_percent_formatter())
        ax.set_ylim(0, max([*training, *new, 0.01]) * 1.15)
        ax.set_ylabel("Share of cases")
        ax.set_title(f"{_short(feature, 40)}: {reference} and new data")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="best")
    return png[0]
