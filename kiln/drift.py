"""Population stability index: how far a sample's distribution is from the training data's.

One definition, used by serving (the rolling window behind ``kiln_feature_drift_psi``), by
``kiln drift`` and the report (a file against the training data), and by ``kiln retrain``.
A distribution is a :class:`kiln.artifact.Bins`: bin edges for numbers (training deciles),
the top categories plus "other" for categoricals, and always a last bin for missing values.

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with both shares floored at :data:`FLOOR` so that an empty bin counts as rare, not
impossible. Common reading: below 0.1 little change, 0.1 to 0.2 some, above 0.2 a shift
worth looking at (:data:`SHIFTED`).

Written here rather than taken from a library: the drift packages (evidently, nannyml,
alibi-detect) bring pandas-heavy stacks into the serving image for what is a dozen lines of
numpy over bins that must match the ones stored at training time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from kiln.artifact import Bins, ModelMetadata, Task
from kiln.values import MISSING_STRING

__all__ = [
    "FLOOR",
    "SHIFTED",
    "bin_count",
    "bin_counts",
    "bin_index",
    "bin_labels",
    "psi",
    "psi_of_counts",
]

FLOOR = 1e-4
"""Smallest share a bin is given in the sum: an empty bin is rare, not impossible."""

SHIFTED = 0.2
"""PSI above which a distribution is said to have shifted (the alert's threshold too)."""


def bin_index(bins: Bins, column: np.ndarray) -> np.ndarray:
    """The bin of each value of ``column`` (typed as the model takes it): int64 indices."""
    if bins.edges is not None:
        values = np.asarray(column, dtype=np.float64)
        index = np.searchsorted(np.asarray(bins.edges, dtype=np.float64), values, side="right")
        index[np.isnan(values)] = len(bins.edges) + 1
        return index.astype(np.int64)
    categories = bins.categories or []
    lookup = {value: i for i, value in enumerate(categories)}
    other, missing = len(categories), len(categories) + 1
    return np.fromiter(
        (
            missing if value == MISSING_STRING else lookup.get(value, other)
            for value in (str(v) for v in column)
        ),
        dtype=np.int64,
        count=len(column),
    )


def bin_count(bins: Bins) -> int:
    """How many bins ``bins`` has, the missing bin included."""
    inner = len(bins.edges) if bins.edges is not None else len(bins.categories or [])
    return inner + 2


def bin_counts(bins: Bins, column: np.ndarray) -> np.ndarray:
    """Rows of ``column`` in each bin of ``bins`` (the missing bin last)."""
    return np.bincount(bin_index(bins, column), minlength=bin_count(bins))


def bin_labels(bins: Bins) -> list[str]:
    """A name for each bin, for tables and charts: ``"< 5.1"``, ``"5.1 to 5.8"``, ``"other"``."""
    if bins.edges is not None:
        edges = bins.edges
        if not edges:
            return ["all values", "missing"]
        labels = [f"< {edges[0]:g}"]
        labels += [f"{lo:g} to {hi:g}" for lo, hi in itertools.pairwise(edges)]
        return [*labels, f">= {edges[-1]:g}", "missing"]
    return [*(bins.categories or []), "other", "missing"]


def prediction_output(metadata: ModelMetadata) -> str:
    """The output whose values the prediction's reference bins: a classifier's predicted
    class (``label``), a regressor's predicted value (``prediction``)."""
    return "label" if metadata.task is Task.classification else "prediction"


def psi_of_counts(expected: Sequence[float], counts: Sequence[float] | np.ndarray) -> float:
    """PSI of observed ``counts`` per bin against ``expected`` shares; NaN with no rows."""
    actual = np.asarray(counts, dtype=np.float64)
    total = actual.sum()
    if total <= 0:
        return float("nan")
    a = np.maximum(actual / total, FLOOR)
    e = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(bins: Bins, column: np.ndarray) -> float:
    """PSI of the values of ``column`` against the reference ``bins``."""
    return psi_of_counts(bins.shares, bin_counts(bins, column))
