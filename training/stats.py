"""Per-feature statistics of the training data, stored with the model for drift monitoring."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import FeatureKind, FeatureStats
from kiln.values import MISSING_STRING

__all__ = ["QUANTILES", "feature_stats"]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP = 20
BINS = 10


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
