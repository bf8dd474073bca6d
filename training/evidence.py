"""What the training data says: the outcome observed by value band, for the features that matter.

Computed at fit time (the training rows are not kept in the store) and registered in
``holdout.json`` as ``evidence``, so a report can say, from the store alone, how the outcome
varies with the features the model's answers depend on most. It describes the data, not the
model: "cases in this band cancelled 41% of the time", an association, never a cause.

Which features: the top ``TOP_FEATURES`` by the holdout's permutation importance (those that
matter at all), else the first features of the data; text features are never banded. A
feature whose values fall into a single band is passed over for the next one.

Bands are made to be read: each holds at least ``max(MIN_ROWS, MIN_SHARE of the rows)``
cases, there are at most ``MAX_BANDS``. Numbers: as many quantile bands as can each hold that
many, edges rounded to a readable step, then the smallest band merged into its smaller
neighbour until every band is big enough; a number with few distinct values gets one band
per value first. Categories: the most common, each big enough, the rest together as "other".
Missing values are a band of their own when there are enough of them (else they are left out
of every band).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import EvidenceBand, FeatureEvidence, FeatureImportance, FeatureKind, Task

__all__ = [
    "MAX_BANDS",
    "MIN_ROWS",
    "MIN_SHARE",
    "TOP_FEATURES",
    "category_bands",
    "chosen_features",
    "evidence",
    "min_band_rows",
    "numeric_bands",
]

TOP_FEATURES = 3
MAX_BANDS = 5
MIN_ROWS = 30  # fewer cases than this in a band, and its rate is mostly noise
MIN_SHARE = 0.05  # ... or than this share of the rows, on a large data set
MISSING = "missing"
OTHER = "other"
DIGITS = 4  # shares are rounded: a report shows whole percentages


def min_band_rows(rows: int) -> int:
    """The fewest cases a band of ``rows`` training rows may hold."""
    return max(MIN_ROWS, math.ceil(MIN_SHARE * rows))


def chosen_features(
    features: Sequence[tuple[str, FeatureKind]],
    importance: Sequence[FeatureImportance] | None,
) -> list[tuple[str, FeatureKind, float | None]]:
    """The features to band, best first: by importance (those above 0), else in data order."""
    kinds = {name: kind for name, kind in features if kind is not FeatureKind.text}
    ranked = sorted(
        (f for f in importance or () if f.feature in kinds and f.mean > 0), key=lambda f: -f.mean
    )
    if ranked:
        return [(f.feature, kinds[f.feature], f.mean) for f in ranked]
    return [(name, kind, None) for name, kind in kinds.items()]


def _step(values: np.ndarray) -> float:
    """A readable rounding step for the edges: a tenth of the order of the values' spread."""
    low, high = np.quantile(values, [0.05, 0.95])
    span = float(high - low) or float(values.max() - values.min())
    if span <= 0:
        return 1.0
    step = 10.0 ** (math.floor(math.log10(span)) - 1)
    whole = bool(np.all(np.mod(values, 1) == 0))
    return max(step, 1.0) if whole else step


def _rounded(edge: float, step: float) -> float:
    decimals = max(0, -math.floor(math.log10(step)))
    return round(round(edge / step) * step, decimals)


def _merge_small(edges: list[float], values: np.ndarray, need: int) -> list[float]:
    """Drop inner edges until every band holds ``need`` values and there are at most
    ``MAX_BANDS`` (or one band is left). Band ``i`` lies between ``edges[i-1]`` and
    ``edges[i]``: the smallest band merges with its smaller neighbour."""
    edges = list(edges)
    while edges:
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        if counts.min() >= need and len(counts) <= MAX_BANDS:
            break
        if counts.min() < need:
            i = int(counts.argmin())
            last = len(counts) - 1
            toward_left = i == last or (i > 0 and counts[i - 1] <= counts[i + 1])
            edges.pop(i - 1 if toward_left else i)
        else:  # every band big enough, but too many: merge the smallest neighbouring pair
            edges.pop(int(np.argmin(counts[:-1] + counts[1:])))
    return edges


def numeric_bands(values: pd.Series, need: int) -> list[tuple[float | None, float | None]]:
    """(low, high) of each band of the non-missing ``values``: ``low <= x < high``, None for
    the open ends; an empty list when the values do not make two bands of ``need``."""
    present = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if len(present) < 2 * need:
        return []
    distinct = np.unique(present)
    if len(distinct) <= MAX_BANDS:
        candidates = [float(v) for v in distinct[1:]]
    else:
        step = _step(present)
        bands = min(MAX_BANDS, len(present) // need)  # as many as can each hold enough
        quantiles = np.quantile(present, np.linspace(0, 1, bands + 1)[1:-1])
        candidates = sorted({_rounded(float(q), step) for q in quantiles})
    edges = [e for e in candidates if present.min() < e <= present.max()]
    edges = _merge_small(edges, present, need)
    if not edges:
        return []
    bounds: list[float | None] = [None, *edges, None]
    return list(itertools.pairwise(bounds))


def _is_missing(values: pd.Series) -> pd.Series:
    missing = values.isna()
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        missing |= values.astype(str).eq("")
    return missing


def category_bands(values: pd.Series, need: int) -> list[list[str] | None]:
    """The categories of each band, most common first; None: every other category. Empty
    when the values do not make two bands of ``need``."""
    present = values[~_is_missing(values)].astype(str)
    counts = present.value_counts(sort=True)
    big = [str(c) for c, n in counts.items() if n >= need]
    if len(big) >= MAX_BANDS:
        big = big[: MAX_BANDS - 1]
    rest = int(counts.drop(big).sum())
    bands: list[list[str] | None] = [[c] for c in big]
    if rest >= need:
        bands.append(None)
    return bands if len(bands) >= 2 else []


def _value(value: float, name: str, values: tuple[float, float]) -> str:
    from training.report.words import value_text

    return value_text(value, name, values)


def _numeric_label(
    low: float | None, high: float | None, inside: np.ndarray, name: str, span: tuple[float, float]
) -> str:
    if len(inside) and inside.min() == inside.max():
        return _value(float(inside.min()), name, span)
    whole = bool(len(inside)) and bool(np.all(np.mod(inside, 1) == 0))
    if low is None and high is not None:
        return f"under {_value(high, name, span)}"
    if high is None and low is not None:
        return f"{_value(low, name, span)} or more"
    assert low is not None and high is not None
    top = high - 1 if whole and float(high).is_integer() else high  # whole numbers: inclusive
    if top == low:
        return _value(low, name, span)
    return f"{_value(low, name, span)} to {_value(top, name, span)}"


def _outcome(
    y: pd.Series, task: Task, classes: Sequence[Any] | None
) -> tuple[list[float] | None, float | None]:
    if task is Task.regression:
        return None, round(float(pd.to_numeric(y).mean()), 6)
    shares = [round(float((y == c).mean()), DIGITS) for c in classes or ()]
    return shares, None


def _feature(
    X: pd.DataFrame,
    y: pd.Series,
    name: str,
    kind: FeatureKind,
    importance: float | None,
    task: Task,
    classes: Sequence[Any] | None,
) -> FeatureEvidence | None:
    column = X[name]
    need = min_band_rows(len(column))
    missing = _is_missing(column).to_numpy(copy=True)
    bands: list[EvidenceBand] = []
    if kind is FeatureKind.numeric:
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        missing |= np.isnan(numbers)
        present = numbers[~missing]
        span = (float(present.min()), float(present.max())) if len(present) else (0.0, 0.0)
        for low, high in numeric_bands(column, need):
            mask = ~missing
            if low is not None:
                mask &= numbers >= low
            if high is not None:
                mask &= numbers < high
            shares, mean = _outcome(y[mask], task, classes)
            label = _numeric_label(low, high, numbers[mask], name, span)
            bands.append(
                EvidenceBand(
                    label=label, low=low, high=high, rows=int(mask.sum()), shares=shares, mean=mean
                )
            )
    else:
        text = column.astype(str)
        groups = category_bands(column, need)
        named = {c for group in groups if group for c in group}
        for group in groups:
            mask = ~missing & (text.isin(group) if group else ~text.isin(named)).to_numpy()
            shares, mean = _outcome(y[mask], task, classes)
            bands.append(
                EvidenceBand(
                    label=group[0] if group else OTHER,
                    categories=group,
                    rows=int(mask.sum()),
                    shares=shares,
                    mean=mean,
                )
            )
    if not bands:
        return None
    if missing.sum() >= need:
        shares, mean = _outcome(y[missing], task, classes)
        bands.append(
            EvidenceBand(
                label=MISSING, missing=True, rows=int(missing.sum()), shares=shares, mean=mean
            )
        )
    return FeatureEvidence(
        feature=name,
        kind=kind,
        importance=importance,
        rows=sum(b.rows for b in bands),
        bands=bands,
    )


def evidence(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    features: Sequence[tuple[str, FeatureKind]],
    task: Task,
    classes: Sequence[Any] | None,
    importance: Sequence[FeatureImportance] | None,
    top: int = TOP_FEATURES,
) -> list[FeatureEvidence]:
    """The outcome in the training rows by band, for the ``top`` features that matter most.

    ``classes``: the order of each band's ``shares`` (the model's ``classes_``); ignored for
    regression, where each band holds the mean target.
    """
    X = X_train.reset_index(drop=True)
    y = pd.Series(np.asarray(y_train, dtype=object), name=getattr(y_train, "name", None))
    if task is Task.regression:
        y = pd.to_numeric(y)
    found: list[FeatureEvidence] = []
    for name, kind, weight in chosen_features(features, importance):
        if len(found) == top:
            break
        banded = _feature(X, y, name, kind, weight, task, classes)
        if banded is not None:
            found.append(banded)
    return found
