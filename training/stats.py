"""Per-feature statistics of the training data, stored with the model for drift monitoring.

:func:`feature_stats` describes each feature (reports, ``kiln models show``);
:func:`reference` is what serving compares live inputs with (kiln.json ``reference``,
schema 3): p0.1/p99.9 bounds for the input checks (kiln/checks.py) and PSI bins for drift
(kiln/drift.py), measured here once with the same binning serving uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import (
    Bins,
    CheckMode,
    FeatureKind,
    FeatureReference,
    FeatureStats,
    Reference,
    Task,
)
from kiln.drift import bin_counts
from kiln.values import MISSING_STRING

__all__ = ["QUANTILES", "feature_stats", "reference"]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP = 20
BINS = 10
DRIFT_BINS = 10  # deciles of numbers
DRIFT_CATEGORIES = 10  # most frequent categories with a bin of their own; the rest is "other"
BOUNDS = (0.001, 0.999)  # the quantiles the range check widens (p0.1, p99.9)


def _numeric(values: pd.Series) -> FeatureStats:
    present = values.dropna().to_numpy(np.float64)
    missing = int(values.isna().sum())
    if present.size == 0:
        return FeatureStats(kind=FeatureKind.numeric, count=len(values), missing=missing)
    counts, edges = np.histogram(present, bins=BINS)
    return FeatureStats(
        kind=FeatureKind.numeric,
        count=len(values),
        missing=missing,
        mean=float(present.mean()),
        std=float(present.std()),
        min=float(present.min()),
        max=float(present.max()),
        quantiles={f"p{round(q * 100):02d}": float(np.quantile(present, q)) for q in QUANTILES},
        histogram={"edges": edges.tolist(), "counts": counts.astype(float).tolist()},
    )


def _strings(values: pd.Series, kind: FeatureKind) -> FeatureStats:
    missing_mask = values == MISSING_STRING
    present = values[~missing_mask]
    counts = present.value_counts()
    common: dict[str, Any] = {
        "kind": kind,
        "count": len(values),
        "missing": int(missing_mask.sum()),
        "unique": len(counts),
    }
    if kind is FeatureKind.text:
        lengths = present.str.len()
        return FeatureStats(
            **common,
            length_mean=float(lengths.mean()) if len(lengths) else None,
            quantiles={f"p{round(q * 100):02d}": float(lengths.quantile(q)) for q in QUANTILES}
            if len(lengths)
            else None,
        )
    return FeatureStats(**common, top={str(k): int(v) for k, v in counts.head(TOP).items()})


def feature_stats(
    X: pd.DataFrame, features: list[tuple[str, FeatureKind]]
) -> dict[str, FeatureStats]:
    """Statistics of each feature over ``X`` (the rows the model was fitted on)."""
    return {
        name: _numeric(X[name]) if kind is FeatureKind.numeric else _strings(X[name], kind)
        for name, kind in features
    }


def _shares(bins: Bins, column: np.ndarray) -> Bins:
    counts = bin_counts(bins, column)
    total = max(int(counts.sum()), 1)
    shares = [round(float(c) / total, 6) for c in counts]
    return bins.model_copy(update={"shares": shares, "rows": int(counts.sum())})


def _number_bins(values: np.ndarray) -> Bins:
    present = values[~np.isnan(values)]
    if present.size == 0:
        edges: list[float] = []
    else:  # deciles; ties (a few distinct values) merge bins, so edges are unique
        inner = np.quantile(present, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1])
        edges = [float(e) for e in np.unique(inner.astype(np.float32))]
    return _shares(Bins(edges=edges, shares=[], rows=0), values)


def _category_bins(values: np.ndarray) -> Bins:
    present = pd.Series(values[values != MISSING_STRING], dtype=object)
    top = [str(v) for v in present.value_counts().head(DRIFT_CATEGORIES).index]
    return _shares(Bins(categories=top, shares=[], rows=0), values)


def _feature(column: pd.Series, kind: FeatureKind) -> FeatureReference:
    if kind is FeatureKind.numeric:
        # float32, as the model and serving see the values
        values = column.to_numpy(np.float64, na_value=np.nan).astype(np.float32)
        present = values[~np.isnan(values)].astype(np.float64)
        low, high = (
            (float(np.quantile(present, BOUNDS[0])), float(np.quantile(present, BOUNDS[1])))
            if present.size
            else (None, None)
        )
        return FeatureReference(bins=_number_bins(values), low=low, high=high)
    values = column.fillna(MISSING_STRING).astype(str).to_numpy(dtype=object)
    return FeatureReference(bins=_category_bins(values))


def prediction_bins(task: Task, predicted: Any) -> Bins:
    """Bins of a model's predictions: one per predicted class (classifiers, in the order of
    their frequency), or deciles of the predicted value (regressors)."""
    if task is Task.classification:
        labels = np.asarray([str(v) for v in predicted], dtype=object)
        classes = [str(v) for v in pd.Series(labels).value_counts().index]
        return _shares(Bins(categories=classes, shares=[], rows=0), labels)
    return _number_bins(np.asarray(predicted, dtype=np.float64))


def reference(
    X: pd.DataFrame,
    features: list[tuple[str, FeatureKind]],
    *,
    task: Task,
    predicted: Any | None,
    checks: CheckMode = CheckMode.warn,
    margin: float = 0.1,
) -> Reference:
    """The training distribution of ``X`` (the rows the model was fitted on) and of its
    ``predicted`` answers on the holdout (None: not known), for serving to compare with."""
    return Reference(
        checks=checks,
        margin=margin,
        features={
            name: _feature(X[name], kind) for name, kind in features if kind is not FeatureKind.text
        },
        prediction=None if predicted is None else prediction_bins(task, predicted),
    )
