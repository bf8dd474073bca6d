"""Charts of the data itself: what the training data says about a feature, and drift.

:func:`evidence_chart` draws one feature's evidence bands (computed at training time): the
outcome observed in each band, with the number of cases under each bar, so that a reader sees
how much each bar rests on. :func:`drift_chart` sets the training share of each bin beside the
new data's (``kiln drift --report``). Both return a :class:`~training.report.chartkit.Chart`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.report.chartkit import (
    EDGE,
    HATCHES,
    Chart,
    done,
    drawing,
    paired_bars,
    place_legend,
    series_style,
)
from training.report.words import number, percent, plural, quoted

__all__ = ["drift_chart", "evidence_chart", "short"]

MIN_LABELLED_SHARE = 0.08  # a stacked segment thinner than this carries no percentage label


def short(label: Any, limit: int = 18) -> str:
    """A label cut to ``limit`` characters, with an ellipsis."""
    text = str(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(band: Any, name: str) -> Any:
    """A band's field, whether the band is a mapping or a model object."""
    return band.get(name) if isinstance(band, Mapping) else getattr(band, name, None)


def _shares(band: Any, classes: Sequence[Any] | None) -> dict[Any, float]:
    """A band's class shares by class: ``shares`` is a list in ``classes`` order, or a dict."""
    shares = _field(band, "shares")
    if shares is None:
        return {}
    if isinstance(shares, Mapping):
        return {c: float(v) for c, v in shares.items()}
    assert classes is not None and len(classes) == len(shares), "shares need their classes"
    return {c: float(v) for c, v in zip(classes, shares, strict=True)}


def evidence_chart(
    feature: str,
    bands: Sequence[Any],
    classes: Sequence[Any] | None = None,
    outcome: str | None = None,
    focus: Any = None,
) -> Chart:
    """The outcome in each band of ``feature`` (its label): the average target (regressors),
    the share of ``focus`` (a binary model's positive class; the second class if not given),
    or, for several classes, the share of each class as stacked, hatched bars.

    ``bands`` are :class:`kiln.artifact.EvidenceBand` (or mappings with its keys): ``label``,
    ``rows``, ``shares`` (in ``classes`` order) and ``mean``. ``outcome`` is the value axis in
    words ("average disease progression"); the number of cases is under each bar.
    """
    shown = [b for b in bands if int(_field(b, "rows") or 0) > 0]
    k = len(shown)
    ticks = [
        f"{short(_field(b, 'label'), 16)}\n{plural(int(_field(b, 'rows')), 'case')}" for b in shown
    ]
    means = [_field(b, "mean") for b in shown]
    shares = [_shares(b, classes) for b in shown]
    classes = list(shares[0]) if shares and shares[0] else []
    regression = bool(shown) and all(m is not None for m in means)
    if not regression and focus is None and len(classes) == 2:
        focus = classes[1]
    if regression:
        axis = outcome or "average outcome"
    elif focus is not None:
        axis = outcome or f"share that are {quoted(focus)}"
    else:
        axis = outcome or "share of each answer"
    title = f"{axis[:1].upper()}{axis[1:]}, by {short(feature, 40)}"
    with drawing("evidence", title) as d:
        ax = d.fig.subplots()
        x = np.arange(k)
        colour = series_style(0)["color"]
        if regression:
            values = [float(m) for m in means]
            bars = ax.bar(x, values, 0.6, color=colour, alpha=0.85, edgecolor=EDGE)
            ax.bar_label(bars, labels=[number(v) for v in values], padding=2, fontsize=10)
            ax.set_ylim(min(0.0, *values), max([*values, 0.0]) * 1.15 or 1.0)
        elif focus is not None:
            values = [float(s.get(focus, 0.0)) for s in shares]
            bars = ax.bar(x, values, 0.6, color=colour, alpha=0.85, edgecolor=EDGE)
            ax.bar_label(bars, labels=[percent(v) for v in values], padding=2, fontsize=10)
            ax.set_ylim(0, min(1.0, max([*values, 0.05])) * 1.18)
            _percent(ax)
        else:
            _stacked(ax, x, shares, classes)
        ax.set_xticks(x, ticks, fontsize=9 if k > 5 else 10)
        ax.set_xlabel(feature)
        ax.set_ylabel(axis[:1].upper() + axis[1:])
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        if not regression and focus is None:
            place_legend(ax, ncol=min(len(classes), 3))
    return done(d)


def _stacked(ax: Any, x: np.ndarray, shares: list[dict[Any, float]], classes: list[Any]) -> None:
    bottom = np.zeros(len(x))
    for n, c in enumerate(classes):
        values = np.array([float(s.get(c, 0.0)) for s in shares])
        bars = ax.bar(
            x,
            values,
            0.6,
            bottom=bottom,
            color=series_style(n)["color"],
            alpha=0.55,
            edgecolor=EDGE,
            hatch=HATCHES[n % len(HATCHES)],
            label=quoted(short(c)),
        )
        words = [percent(v) if v >= MIN_LABELLED_SHARE else "" for v in values]
        for text in ax.bar_label(bars, labels=words, label_type="center", fontsize=9):
            # on a pale box, so the hatching under it does not cross the figures
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})
        bottom += values
    ax.set_ylim(0, 1)
    _percent(ax)


def _percent(ax: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def drift_chart(
    feature: str,
    labels: Sequence[str],
    training: Sequence[float],
    new: Sequence[float],
    reference: str = "training",
) -> Chart:
    """Training share against new share of each bin, side by side. The new bars are hatched
    and both have dark edges, so the two read apart in print and in grey too. Bins empty in
    both are left out (most features have no missing values)."""
    shown = [i for i in range(len(labels)) if training[i] > 0 or new[i] > 0]
    k = len(shown)
    title = f"{short(feature, 40)}: {reference} and new data"
    with drawing("drift", title) as d:
        ax = d.fig.subplots()
        x = np.arange(k)
        for n, (name, values) in enumerate([(reference, training), ("new data", new)]):
            paired_bars(ax, x, n, [values[i] for i in shown], name)
        names = [short(labels[i], 16) for i in shown]
        ax.set_xticks(x, names, rotation=0 if k <= 4 else 35, ha="center" if k <= 4 else "right")
        _percent(ax)
        ax.set_ylim(0, max([*training, *new, 0.01]) * 1.2)
        ax.set_ylabel("Share of cases")
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        place_legend(ax)
    return done(d)
