"""Has the data changed since training? A file's drift against a model's training data.

    from training.drift import file_drift
    result = file_drift(resolve("churn"), [Path("march.csv")])
    for feature in result.features:  # largest PSI first
        print(feature.feature, feature.psi, feature.verdict, feature.change)

The files are read as ``kiln predict`` reads them (training/batch.py: CSV, TSV or Parquet,
chunk by chunk, so memory stays bounded whatever their size) and checked by the same value
rules (kiln/values.py): a row those rules refuse is counted, never binned. Every other row
is binned with kiln/drift.py against the model's training reference (kiln.json ``reference``,
schema 3: training deciles for numbers, the top categories plus "other" for categoricals,
a missing bin for both) and run through the model, whose answers are binned against the
holdout's (``reference.prediction``). The input checks (kiln/checks.py) are counted per
feature and reason, as serving counts them.

A model of schema 1 or 2 has no stored reference. Its training statistics still describe
the training rows, so they stand in, and the result says so (``basis``): the ten
equal-width histogram bins of each number (:attr:`kiln.artifact.FeatureStats.histogram`),
the most common categories of each categorical (``top``), and the holdout's predictions
(holdout.json) when it has them. The PSI is then over coarser bins than a schema-3
model's, but it is measured on the same rows as ever.

One place computes this: ``kiln drift``, the report's "Has the data changed since
training?" section and ``kiln retrain`` (the new files against the champion) all call
:func:`file_drift`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiln.artifact import (
    Bins,
    FeatureKind,
    FeatureReference,
    ModelMetadata,
    Reference,
    Task,
    read_holdout,
)
from kiln.checks import InputChecks
from kiln.drift import SHIFTED, bin_count, bin_counts, bin_labels, prediction_output, psi_of_counts
from kiln.errors import DataError, KilnError
from kiln.production import DriftRecord
from kiln.runtime import ModelRuntime, default_providers
from kiln.store import StoredModel
from kiln.values import check_frame, nonfinite_outputs
from training.batch import open_source  # the reader `kiln predict` uses: one rule for files
from training.stats import DRIFT_CATEGORIES, prediction_bins

__all__ = [
    "SOME_CHANGE",
    "DriftResult",
    "FeatureDrift",
    "drift_record",
    "file_drift",
    "stats_reference",
    "verdict",
]

SOME_CHANGE = 0.1
"""PSI from which a distribution is said to have changed somewhat (to :data:`SHIFTED`)."""

PREDICTION = "prediction"  # the name the model's answers go by in tables and the report


def verdict(psi: float) -> str:
    """``shifted`` above :data:`kiln.drift.SHIFTED`, ``some change`` from
    :data:`SOME_CHANGE`, ``stable`` below; ``no rows`` when nothing was binned."""
    if math.isnan(psi):
        return "no rows"
    if psi > SHIFTED:
        return "shifted"
    return "some change" if psi >= SOME_CHANGE else "stable"


def _share(value: float) -> str:
    if value == 0:
        return "0%"
    if value < 0.001:
        return "under 0.1%"
    return f"{value:.1%}" if value < 0.01 else f"{value:.0%}"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature (or the model's answers): training shares against new shares per bin."""

    feature: str
    kind: FeatureKind | None  # None: the model's answers
    psi: float  # NaN when no row was binned
    labels: list[str]  # one per bin, the missing bin last (kiln.drift.bin_labels)
    expected: list[float]  # training share of each bin
    actual: list[float]  # new share of each bin
    rows: int  # new rows binned
    numeric: bool = False  # bins are number ranges (else categories)
    categories_complete: bool = True  # categoricals: "other" holds only unseen values

    @property
    def verdict(self) -> str:
        return verdict(self.psi)

    @property
    def biggest(self) -> int:
        """The bin whose share changed most."""
        return int(np.argmax(np.abs(np.subtract(self.actual, self.expected))))

    def _where(self, i: int) -> str:
        label = self.labels[i]
        answer = self.kind is None  # the model's answers, not a feature
        if i == len(self.labels) - 1:
            return "get no answer" if answer else "are missing"
        if self.numeric:
            lead = "get an answer " if answer else "are "
            if label.startswith("< "):
                return f"{lead}below {label[2:]}"
            if label.startswith(">= "):
                return f"{lead}{'of ' if answer else ''}{label[3:]} or above"
            if " to " in label:
                low, high = label.split(" to ")
                return f"{lead}from {low} to under {high}"
            return f"{lead.strip()} a value"
        if i == len(self.labels) - 2:  # "other"
            if answer:
                return "get an answer the holdout never got"
            if self.categories_complete:
                return "hold a category never seen in training"
            return f"hold a category other than the {i} most common in training"
        return f"get the answer {label!r}" if answer else f"are {label!r}"

    def describe(self, items: str = "rows", baseline: str | None = None) -> str:
        """The biggest change in words: "41% of new rows are below 7, against 8% in
        training"; ``items`` names the rows, ``baseline`` the reference (default: "in
        training", or "on the holdout" for the model's answers)."""
        if not self.rows:
            return f"no new {items} to compare"
        i = self.biggest
        against = baseline or ("on the holdout" if self.kind is None else "in training")
        return (
            f"{_share(self.actual[i])} of new {items} {self._where(i)}, "
            f"against {_share(self.expected[i])} {against}"
        )

    @property
    def change(self) -> str:
        return self.describe()

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "psi": None if math.isnan(self.psi) else round(self.psi, 6),
            "verdict": self.verdict,
            "change": self.change,
            "rows": self.rows,
            "bins": [
                {"bin": label, "training": round(e, 6), "new": round(a, 6)}
                for label, e, a in zip(self.labels, self.expected, self.actual, strict=True)
            ],
        }


@dataclass(frozen=True)
class DriftResult:
    """The drift of some files against one model's training data."""

    model: str  # NAME:VERSION
    files: list[str]
    rows: int  # data rows read
    refused: int  # rows the value rules refuse (counted, not binned)
    features: list[FeatureDrift]  # largest PSI first (NaN last)
    prediction: FeatureDrift | None  # the model's answers; None without a holdout reference
    checks: dict[tuple[str, str], int] = field(default_factory=dict)  # (feature, reason): rows
    basis: str = "reference"  # "reference" (schema 3) or "statistics" (schema 1/2, coarser)
    seconds: float = 0.0
    unscored: int = 0  # rows binned whose answer was not a finite number (no prediction bin)

    @property
    def drifting(self) -> list[FeatureDrift]:
        """The features that changed (``some change`` or ``shifted``), largest PSI first."""
        return [f for f in self.features if f.verdict in ("shifted", "some change")]

    def psi(self) -> dict[str, float | None]:
        """Feature -> PSI (None: no rows), largest first: what retraining records."""
        return {f.feature: None if math.isnan(f.psi) else round(f.psi, 6) for f in self.features}

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "files": self.files,
            "rows": self.rows,
            "refused": self.refused,
            "basis": self.basis,
            "seconds": round(self.seconds, 3),
            "features": [f.as_dict() for f in self.features],
            "prediction": self.prediction.as_dict() if self.prediction else None,
            "unscored": self.unscored,
            "checks": [
                {"feature": feature, "reason": reason, "rows": rows}
                for (feature, reason), rows in sorted(self.checks.items())
            ],
        }


# --- the reference -------------------------------------------------------------------------


def stats_reference(meta: ModelMetadata, predicted: Sequence[Any] | None) -> Reference:
    """A stand-in reference for a model without one (schema 1 and 2), from its training
    statistics: each number's equal-width histogram, each categorical's most common values;
    the predictions ``predicted`` on the holdout (holdout.json), when known."""
    features: dict[str, FeatureReference] = {}
    for feature in meta.features:
        s = meta.feature_stats.get(feature.name)
        if feature.kind is FeatureKind.text or s is None or not s.count:
            continue
        if feature.kind is FeatureKind.numeric:
            if not s.histogram:
                continue
            edges, counts = s.histogram["edges"], s.histogram["counts"]
            shares = [c / s.count for c in counts]
            bins = Bins(
                edges=list(edges[1:-1]), shares=[*shares, s.missing / s.count], rows=s.count
            )
        else:
            top = list((s.top or {}).items())[:DRIFT_CATEGORIES]
            known = sum(n for _, n in top)
            shares = [n / s.count for _, n in top]
            other = (s.count - s.missing - known) / s.count
            shares += [other, s.missing / s.count]
            bins = Bins(categories=[c for c, _ in top], shares=shares, rows=s.count)
        features[feature.name] = FeatureReference(bins=bins)
    prediction = prediction_bins(meta.task, predicted) if predicted is not None else None
    return Reference(features=features, prediction=prediction)


def _reference(stored: StoredModel) -> tuple[Reference, str]:
    meta = stored.metadata
    if meta.reference is not None:
        return meta.reference, "reference"
    holdout = read_holdout(stored.path, stored.tag)
    return stats_reference(meta, holdout.y_pred if holdout else None), "statistics"


# --- the run -------------------------------------------------------------------------------


def _answers(meta: ModelMetadata, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The model's answers as the reference bins them (labels as strings, or values)."""
    answers = outputs[prediction_output(meta)].reshape(-1)
    if meta.task is Task.classification:
        return np.asarray([str(v) for v in answers], dtype=object)
    return answers.astype(np.float64)


def file_drift(
    stored: StoredModel,
    paths: Sequence[Path],
    *,
    chunk_rows: int = 50_000,
    predictions: bool = True,
) -> DriftResult:
    """The drift of the rows of ``paths`` against the training data of ``stored``.

    ``predictions``: also run the model on the rows and compare its answers with the
    holdout's (when the model has them). Raises DataError for a missing or unreadable file
    or a missing feature column, ArtifactError when the model cannot be opened.
    """
    started = time.perf_counter()
    meta = stored.metadata
    reference, basis = _reference(stored)
    features = [(f.name, f.kind) for f in meta.features]
    names = [name for name, _ in features]
    strings = {n for n, k in features if k is not FeatureKind.numeric}
    sources = [open_source(Path(p)) for p in paths]
    if not sources:
        raise DataError("no data file given")
    for source in sources:
        missing = [n for n in names if n not in source.columns]
        if missing:
            raise DataError(
                f"no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                f"for model {stored.tag}; the file's columns are: "
                + ", ".join(source.columns[:40])
                + (" ..." if len(source.columns) > 40 else ""),
                source=str(source.path),
            )
    binned = {name: ref.bins for name, ref in reference.features.items() if name in names}
    counts = {name: np.zeros(bin_count(bins), dtype=np.int64) for name, bins in binned.items()}
    answer_bins = reference.prediction if predictions else None
    answers = np.zeros(bin_count(answer_bins), dtype=np.int64) if answer_bins else None
    runtime = (
        ModelRuntime(stored, default_providers(), intra_op_threads=0)
        if answers is not None
        else None
    )
    checks = InputChecks(meta)
    found: dict[tuple[str, str], int] = {}
    rows = refused = unscored = 0
    for source in sources:
        for frame in source.chunks(names, strings, None, chunk_rows):
            checked = check_frame(frame, features)
            good = ~checked.bad
            n_good = int(good.sum())
            rows += len(frame)
            refused += len(frame) - n_good
            if not n_good:
                continue
            columns = (
                checked.columns
                if n_good == len(frame)
                else {n: v[good] for n, v in checked.columns.items()}
            )
            for name, bins in binned.items():
                counts[name] += bin_counts(bins, columns[name])
            for key, mask in checks.masks(columns).items():
                found[key] = found.get(key, 0) + int(mask.sum())
            if runtime is not None and answers is not None and answer_bins is not None:
                outputs = runtime.run(columns)
                bad = nonfinite_outputs(outputs)
                values = _answers(meta, outputs)
                if bad:
                    keep = np.ones(len(values), dtype=bool)
                    keep[list(bad)] = False
                    values = values[keep]
                    unscored += len(bad)
                answers += bin_counts(answer_bins, values)

    def drift(name: str, kind: FeatureKind | None, bins: Bins, seen: np.ndarray) -> FeatureDrift:
        total = int(seen.sum())
        other = len(bins.categories) if bins.categories is not None else None
        return FeatureDrift(
            feature=name,
            kind=kind,
            psi=psi_of_counts(bins.shares, seen),
            labels=bin_labels(bins),
            expected=list(bins.shares),
            actual=[float(c) / total if total else 0.0 for c in seen],
            rows=total,
            numeric=bins.edges is not None,
            categories_complete=other is None or bins.shares[other] == 0,
        )

    kinds = dict(features)
    ranked = sorted(
        (drift(name, kinds[name], binned[name], counts[name]) for name in binned),
        key=lambda f: (math.isnan(f.psi), -f.psi if not math.isnan(f.psi) else 0.0, f.feature),
    )
    prediction = (
        drift(PREDICTION, None, answer_bins, answers)
        if answer_bins is not None and answers is not None
        else None
    )
    return DriftResult(
        model=stored.tag,
        files=[str(s.path) for s in sources],
        rows=rows,
        refused=refused,
        features=ranked,
        prediction=prediction,
        checks=found,
        basis=basis,
        seconds=time.perf_counter() - started,
        unscored=unscored,
    )


def drift_record(
    champion: StoredModel,
    files: Sequence[Path],
    on_drift: Callable[[DriftResult], None] | None = None,
) -> DriftRecord:
    """The drift of ``files`` against the champion's training data, as `kiln retrain`'s
    decision keeps it (kiln.production.DriftRecord); shown to ``on_drift`` first. Files
    the champion cannot read (a feature it takes is no longer there) make a note in the
    record, never a failed run: drift informs, the comparison decides."""
    try:
        result = file_drift(champion, files)
    except KilnError as exc:
        return DriftRecord(
            against=champion.tag,
            files=[str(f) for f in files],
            rows=0,
            features={},
            note=f"not measured: {exc}",
        )
    if on_drift is not None:
        on_drift(result)
    prediction = result.prediction.psi if result.prediction is not None else None
    return DriftRecord(
        against=champion.tag,
        files=result.files,
        rows=result.rows - result.refused,
        features=result.psi(),
        prediction=None if prediction is None or math.isnan(prediction) else round(prediction, 6),
        basis="statistics" if result.basis == "statistics" else "reference",
    )
