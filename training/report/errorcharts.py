"""The report's charts of a regressor's errors: estimates against truth, and error sizes.

The client's document shows :func:`predicted_vs_actual_chart` and :func:`error_sizes_chart`
(how many cases are off by how much, in the target's own unit); the technical one may add
:func:`residuals_chart` (signed errors). Re-exported by :mod:`training.report.charts`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.report.chartkit import EDGE, GUESS, Chart, done, drawing, place_legend, series_style
from training.report.words import number

__all__ = ["error_sizes_chart", "predicted_vs_actual_chart", "residuals_chart"]

MAX_POINTS = 5_000  # scatter plots draw at most this many holdout rows


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(arrays[0])
    if n <= MAX_POINTS:
        return arrays
    keep = np.random.default_rng(0).choice(n, MAX_POINTS, replace=False)
    return tuple(a[keep] for a in arrays)


def predicted_vs_actual_chart(
    y_true: Sequence[float], y_pred: Sequence[float], target: str
) -> Chart:
    truth, guess = _thin(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float))
    low = float(min(truth.min(), guess.min()))
    high = float(max(truth.max(), guess.max()))
    title = "Estimates against the true values"
    with drawing("predicted_vs_actual", title) as d:
        ax = d.fig.subplots()
        ax.scatter(truth, guess, s=22, alpha=0.6, color=series_style(0)["color"], label="a case")
        ax.plot([low, high], [low, high], ls="--", color=GUESS, lw=1.5, label="exact estimate")
        ax.set_xlabel(f"True {target}")
        ax.set_ylabel(f"Estimated {target}")
        ax.set_title(title)
        place_legend(ax, order=("upper left", "lower right", "lower left", "upper right"))
    return done(d)


def error_sizes_chart(
    y_true: Sequence[float], y_pred: Sequence[float], target: str, unit: str | None = None
) -> Chart:
    """How many cases are off by how much, in the target's unit, with the half and nine in
    ten marks as lines (dashed and dotted)."""
    from matplotlib.ticker import MaxNLocator

    off = np.abs(np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float))
    half, most = np.quantile(off, [0.5, 0.9]) if len(off) else (0.0, 0.0)
    title = "How far off its estimates are"
    with drawing("error_sizes", title) as d:
        ax = d.fig.subplots()
        ax.hist(
            off,
            bins=min(30, max(8, len(off) // 10)),
            color=series_style(0)["color"],
            alpha=0.55,
            edgecolor=EDGE,
            linewidth=0.5,
        )
        ax.axvline(
            half, ls="--", lw=2, color=EDGE, label=f"half are off by less than {number(half)}"
        )
        ax.axvline(most, ls=":", lw=2.4, color=EDGE, label=f"9 in 10: less than {number(most)}")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(left=0)
        ax.set_xlabel(f"Off by ({unit})" if unit else f"Off by (in {target})")
        ax.set_ylabel("Number of cases")
        ax.set_title(title)
        place_legend(ax, order=("upper right", "center right", "upper center"))
    return done(d)


def residuals_chart(y_true: Sequence[float], y_pred: Sequence[float], target: str) -> Chart:
    """The technical document's errors: true minus estimated against the estimate, and how
    often each error (with its sign) occurs. The client's chart is :func:`error_sizes_chart`."""
    from matplotlib.ticker import MaxNLocator

    truth, guess = _thin(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float))
    errors = truth - guess
    title = "Errors by estimate and by size"
    with drawing("residuals", title) as d:
        d.fig.suptitle(title, fontweight="bold")
        left, right = d.fig.subplots(1, 2, width_ratios=[3, 2])
        left.scatter(guess, errors, s=18, alpha=0.6, color=series_style(0)["color"])
        left.axhline(0, ls="--", color=GUESS, lw=1.5)
        left.set_xlabel(f"Estimated {target}")
        left.set_ylabel("True minus estimated")
        left.set_title("By estimate")
        right.hist(errors, bins=min(30, max(8, len(errors) // 10)), color=GUESS, edgecolor=EDGE)
        right.axvline(0, ls="--", color=EDGE, lw=1.5)
        right.yaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel("True minus estimated")
        right.set_ylabel("Number of cases")
        right.set_title("By size")
    return done(d)
