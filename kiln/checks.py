"""Input checks: is a row like the rows the model was trained on? One set of rules.

A value can be valid (kiln/values.py) and still be one the model never learned from. Every
entry point (the JSON and Open Inference Protocol routes, the in-process Predictor,
``kiln predict``) runs these checks on the typed columns after the value rules (the service
once per merged batch, service/dataplane.py), so the same row gets the same findings, with
the same words, everywhere:

- ``unseen_category``: a categorical value the model never saw in training (the encoder's
  categories); the model answers for it as if the feature were missing.
- ``out_of_range``: a number outside what training covered: below p0.1 or above p99.9,
  widened by the model's margin (a share of the p0.1-p99.9 span), and never inside the
  training min/max, so every value training saw passes. Models without those quantiles
  (kiln.json schema 1 and 2) use the training min/max alone, and the message says so.
- ``missing``: a missing value in a feature that had none in training.

What a finding does depends on the mode (:class:`kiln.artifact.CheckMode`): ``accept``
counts it, ``warn`` (the default) also returns it with the answer, ``reject`` refuses the
request with :class:`kiln.errors.InputRejected` (422) naming the row and feature. The mode
comes from the model (its spec's ``monitoring.input_checks``) unless the caller overrides it.

Text features are not checked: any text is a valid text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.artifact import CheckMode, FeatureKind, ModelMetadata, parse_mode
from kiln.errors import InputRejected
from kiln.values import MISSING_STRING, show

__all__ = ["MAX_WARNINGS", "REASONS", "Finding", "InputChecks", "parse_mode", "warnings_body"]

REASONS = ("unseen_category", "out_of_range", "missing")
"""The reasons a finding can have; also the metric names' middle part."""

MAX_WARNINGS = 100
"""Most findings one answer carries (``warning_count`` says how many there were)."""

_SHOWN_CATEGORIES = 10  # categories a message lists before "..."


@dataclass(frozen=True)
class Finding:
    """One value of one row that fails a check."""

    row: int
    feature: str
    value: Any
    reason: str  # one of REASONS
    message: str  # what is wrong with the value, without the row and feature

    def as_dict(self) -> dict[str, Any]:
        value = self.value.item() if isinstance(self.value, np.generic) else self.value
        if self.reason == "missing":  # NaN or "": null, as a client sends a missing value
            value = None
        return {
            "row": self.row,
            "feature": self.feature,
            "value": value,
            "reason": self.reason,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"feature {self.feature!r}, row {self.row}: {self.message}"


def warnings_body(findings: list[Finding], total: int) -> dict[str, Any]:
    """What an answer carries under ``warn`` when rows failed a check (nothing otherwise):
    ``warnings``, the first :data:`MAX_WARNINGS` findings as objects (row, feature, value,
    reason, message), and ``warning_count``, how many there were. The JSON route and the
    Predictor add it to their answer as is; the V2 routes carry it in ``parameters``."""
    if not total:
        return {}
    return {"warnings": [f.as_dict() for f in findings], "warning_count": total}


def _number(value: float) -> str:
    return f"{value:g}"


def _as_sent(value: Any) -> Any:
    """A value of a column as the client wrote it: a float32 by its shortest repr (87.1, not
    87.0999984741211, which is what float(np.float32(87.1)) gives)."""
    if isinstance(value, np.floating):
        return float(str(value))
    return value


@dataclass(frozen=True)
class _Range:
    feature: str
    low: float  # lowest value accepted
    high: float  # highest value accepted
    seen: str  # "2700 to 6300"
    why_low: str  # what a too-low value is told, after the value
    why_high: str


class InputChecks:
    """The checks of one model, built once from its kiln.json."""

    def __init__(self, metadata: ModelMetadata, mode: CheckMode | None = None) -> None:
        reference = metadata.reference
        self.mode = mode or (reference.checks if reference else CheckMode.warn)
        self.features = [f.name for f in metadata.features if f.kind is not FeatureKind.text]
        ranges: list[tuple[bool, _Range]] = []  # (may be missing, range)
        self._categories: dict[str, frozenset[str]] = {}
        self._listed: dict[str, str] = {}
        # Categorical features to look at: (name, the values that pass, checked for unseen
        # values, checked for missing ones).
        self._categorical: list[tuple[str, frozenset[str], bool, bool]] = []
        self._never_missing: list[tuple[str, FeatureKind]] = []  # numbers without a range
        for feature in metadata.features:
            stats = metadata.feature_stats.get(feature.name)
            if feature.kind is FeatureKind.text or stats is None:
                continue
            never_missing = stats.missing == 0
            if feature.kind is FeatureKind.categorical:
                known = feature.categories is not None
                seen = [c for c in feature.categories or [] if c != MISSING_STRING]
                if known:
                    self._categories[feature.name] = frozenset(seen)
                    listed = ", ".join(map(show, seen[:_SHOWN_CATEGORIES]))
                    more = len(seen) - _SHOWN_CATEGORIES
                    self._listed[feature.name] = listed + (f" and {more} more" if more > 0 else "")
                if known or never_missing:
                    passing = frozenset(seen) | (frozenset() if never_missing else {MISSING_STRING})
                    self._categorical.append((feature.name, passing, known, never_missing))
            elif stats.min is not None and stats.max is not None:
                ranges.append(
                    (not never_missing, self._range(feature.name, stats.min, stats.max, metadata))
                )
            elif never_missing:
                self._never_missing.append((feature.name, feature.kind))
        # The numbers are checked as one (features, rows) block: the features never missing
        # first, so that their missing values are one slice of it.
        ranges.sort(key=lambda pair: pair[0])
        self._ranges = [r for _, r in ranges]
        self._no_missing = sum(1 for may_miss, _ in ranges if not may_miss)
        # The columns are float32 (kiln/values.py): bounds rounded inwards to float32 compare
        # the same as the exact ones (a float32 v < low exactly when v < the least float32 >=
        # low), and save a conversion of the block to float64 on every request.
        low = np.array([r.low for r in self._ranges], dtype=np.float64)
        high = np.array([r.high for r in self._ranges], dtype=np.float64)
        low32, high32 = low.astype(np.float32), high.astype(np.float32)
        low32 = np.where(low32 < low, np.nextafter(low32, np.float32(np.inf)), low32)
        high32 = np.where(high32 > high, np.nextafter(high32, np.float32(-np.inf)), high32)
        self._low = low32.astype(np.float32).reshape(-1, 1)
        self._high = high32.astype(np.float32).reshape(-1, 1)
        # Every (feature, reason) :meth:`masks` can find, in a fixed order: the columns of
        # :meth:`flags`.
        keys = [(r.feature, "out_of_range") for r in self._ranges]
        keys += [(r.feature, "missing") for r in self._ranges[: self._no_missing]]
        for name, _, known, never_missing in self._categorical:
            keys += [(name, "unseen_category")] if known else []
            keys += [(name, "missing")] if never_missing else []
        keys += [(name, "missing") for name, _ in self._never_missing]
        self.keys: tuple[tuple[str, str], ...] = tuple(keys)
        self._column = {key: j for j, key in enumerate(keys)}

    @staticmethod
    def _range(name: str, lo: float, hi: float, metadata: ModelMetadata) -> _Range:
        seen = f"{_number(lo)} to {_number(hi)}"
        ref = metadata.reference.features.get(name) if metadata.reference else None
        if ref is None or ref.low is None or ref.high is None:
            why = "the range seen in training: " + seen
            return _Range(name, lo, hi, seen, f"is below {why}", f"is above {why}")
        assert metadata.reference is not None
        widen = metadata.reference.margin * (ref.high - ref.low)
        low, high = min(lo, ref.low - widen), max(hi, ref.high + widen)
        return _Range(
            name,
            low,
            high,
            seen,
            f"is below the range seen in training ({seen}, accepted down to {_number(low)})",
            f"is above the range seen in training ({seen}, accepted up to {_number(high)})",
        )

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Lowest and highest accepted value of each numeric feature (docs, the try-it page)."""
        return {r.feature: (r.low, r.high) for r in self._ranges}

    def masks(self, columns: dict[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
        """(feature, reason) -> bool mask of the rows that fail, for those that have any.

        Written for the one-row request, where each numpy call costs more than its work: the
        numbers are one block and two comparisons, each categorical column one set lookup,
        and the masks of a feature are only made when something in it failed."""
        found: dict[tuple[str, str], np.ndarray] = {}
        ranges = self._ranges
        if ranges:
            values = np.concatenate([columns[r.feature] for r in ranges])
            values.shape = (len(ranges), -1)
            # The usual case first, in one pass: every number within its bounds (NaN is
            # within none, so a missing value anywhere takes the look below).
            within = (values >= self._low) & (values <= self._high)
            if np.count_nonzero(within) == within.size:
                ranges = []
        if ranges:
            outside = (values < self._low) | (values > self._high)  # NaN is neither
            if outside.any():
                for j in np.flatnonzero(outside.any(axis=1)).tolist():
                    found[(ranges[j].feature, "out_of_range")] = outside[j]
            head = values[: self._no_missing]
            # One reduction to see whether any of them is NaN (missing): a sum is NaN if a
            # term is (or inf - inf, which only costs the look below).
            total = np.add.reduce(head, axis=None)
            if total != total:
                for j in np.flatnonzero(np.isnan(head).any(axis=1)).tolist():
                    found[(ranges[j].feature, "missing")] = np.isnan(head[j])
        for name, passing, known, never_missing in self._categorical:
            column = columns[name]
            if passing.issuperset(column.tolist()):
                continue
            if known:
                seen = self._categories[name]
                unseen = np.fromiter(
                    (v != MISSING_STRING and v not in seen for v in column),
                    dtype=bool,
                    count=len(column),
                )
                if unseen.any():
                    found[(name, "unseen_category")] = unseen
            if never_missing:
                missing = np.asarray(column == MISSING_STRING, dtype=bool)
                if missing.any():
                    found[(name, "missing")] = missing
        for name, kind in self._never_missing:
            column = columns[name]
            missing = np.isnan(column) if kind is FeatureKind.numeric else column == MISSING_STRING
            if missing.any():
                found[(name, "missing")] = np.asarray(missing, dtype=bool)
        return found

    def flags(self, masks: dict[tuple[str, str], np.ndarray], rows: int) -> np.ndarray:
        """The masks as one (rows, len(keys)) bool block, a column per key of
        :attr:`keys`: rows can be sliced and joined like a model's output (the service
        checks a batch once and hands each request its rows, service/dataplane.py)."""
        # Made key by key, (keys, rows) in memory: each mask is one contiguous write, and
        # from_flags reduces along the rows' contiguous axis.
        block = np.zeros((len(self.keys), rows), dtype=bool)
        for key, mask in masks.items():
            block[self._column[key]] = mask
        return block.T

    def from_flags(self, block: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
        """The masks a :meth:`flags` block holds (its rows only), as :meth:`masks` gives."""
        return {self.keys[j]: block[:, j] for j in np.flatnonzero(block.any(axis=0)).tolist()}

    def _message(self, feature: str, reason: str, value: Any) -> str:
        if reason == "missing":
            return "is missing, and was never missing in training"
        if reason == "unseen_category":
            return f"{show(value)} was never seen in training (seen: {self._listed[feature]})"
        bounds = next(r for r in self._ranges if r.feature == feature)
        why = bounds.why_low if float(value) < bounds.low else bounds.why_high
        return f"{show(value)} {why}"

    def findings(
        self,
        columns: dict[str, np.ndarray],
        masks: dict[tuple[str, str], np.ndarray] | None = None,
        limit: int | None = None,
    ) -> list[Finding]:
        """The findings of ``columns``, by row then feature order; at most ``limit``."""
        masks = self.masks(columns) if masks is None else masks
        if not masks:
            return []
        order = {name: i for i, name in enumerate(self.features)}
        cells = sorted(
            (int(row), order[feature], feature, reason)
            for (feature, reason), mask in masks.items()
            for row in np.flatnonzero(mask)[:limit].tolist()
        )[:limit]
        return [
            Finding(row, feature, value, reason, self._message(feature, reason, value))
            for row, _, feature, reason in cells
            for value in (_as_sent(columns[feature][row]),)
        ]

    @staticmethod
    def counts(masks: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], int]:
        """(feature, reason) -> rows that fail: what the counters count."""
        return {key: int(mask.sum()) for key, mask in masks.items()}

    def inspect(
        self, columns: dict[str, np.ndarray], mode: CheckMode | None = None
    ) -> tuple[dict[tuple[str, str], int], list[Finding], int]:
        """Run the checks under ``mode`` (default: the model's): (counts, findings to return
        with the answer, how many there were). ``reject`` raises InputRejected instead when
        anything is found; ``accept`` returns no findings."""
        mode = mode or self.mode
        masks = self.masks(columns)
        if not masks:
            return {}, [], 0
        counts = self.counts(masks)
        total = sum(counts.values())
        if mode is CheckMode.accept:
            return counts, [], total
        shown = self.findings(columns, masks, limit=MAX_WARNINGS)
        if mode is CheckMode.reject:
            raise InputRejected(shown, total, counts)
        return counts, shown, total
