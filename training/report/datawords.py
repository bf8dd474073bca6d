"""What the data says, in words: one sentence per feature of a model's training evidence.

The holdout document's ``evidence`` (training/evidence.py) holds, for the features the
model's answers depend on most, the outcome observed in the training rows by value band or
category. Each feature gets one sentence comparing the band where the outcome is highest with
the one where it is lowest ("In the training data, churned was 'yes' 5 times as often for
cases with contract 'monthly' as for those with contract 'two-year' (58% against 12%)"),
said as an association in the data the model learned from, never as a cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from training.report.words import feature_label, join_words, number, percent, quoted, readable_name

if TYPE_CHECKING:
    from kiln.artifact import EvidenceBand, FeatureEvidence, Holdout, ModelMetadata

__all__ = ["ASSOCIATION", "data_says", "evidence_sentence", "positive_class"]

ASSOCIATION = (
    "These are patterns in the data the model learned from: they show what went together, "
    "not what causes what."
)


def _band_phrase(feature: str, band: EvidenceBand) -> str:
    """A band as the end of "cases with ...": "tenure (months) under 6", "contract 'monthly'"."""
    if band.missing:
        return f"no {feature} recorded"
    if band.categories is None and band.low is None and band.high is None:
        return f"another {feature}"  # the categories merged as "other"
    if band.categories is not None:
        return f"{feature} {join_words([quoted(c) for c in band.categories], last='or')}"
    if band.label.startswith("under "):
        return f"{feature} {band.label}"
    return f"{feature} of {band.label}"


def _class_to_tell(
    bands: Sequence[EvidenceBand], classes: Sequence[Any], positive: Any = None
) -> int:
    """The class a sentence speaks of: the positive one (binary), else the one whose share
    differs most between the bands."""
    if positive is not None and positive in classes:
        return list(classes).index(positive)
    spreads = [
        max(b.shares[i] for b in bands if b.shares) - min(b.shares[i] for b in bands if b.shares)
        for i in range(len(classes))
    ]
    return int(np.argmax(spreads))


def evidence_sentence(
    found: FeatureEvidence,
    feature: str,
    target: str,
    classes: Sequence[Any] | None = None,
    positive: Any = None,
) -> str:
    """One sentence on a feature's bands: the band where the outcome is highest against the
    one where it is lowest, as an association in the training data.

    ``feature``, ``target``: as the reader calls them. Classification: the share of
    ``positive`` (else of the class whose share differs most); regression: the mean target.
    """
    bands = [b for b in found.bands if b.rows]
    if classes is not None and all(b.shares for b in bands):
        i = _class_to_tell(bands, classes, positive)
        shares = [b.shares[i] for b in bands if b.shares]
        top, bottom = bands[int(np.argmax(shares))], bands[int(np.argmin(shares))]
        high, low = max(shares), min(shares)
        what = f"{target} was {quoted(classes[i])}"
        if high - low < 0.02:
            return (
                f"In the training data, {what} about as often whatever the {feature} "
                f"(between {percent(low)} and {percent(high)} of cases)."
            )
        if low == 0 or high / low >= 10:
            return (
                f"In the training data, {what} for {percent(high)} of cases with "
                f"{_band_phrase(feature, top)}, against {percent(low)} of those with "
                f"{_band_phrase(feature, bottom)}."
            )
        ratio = high / low
        times = f"{ratio:.0f} times" if ratio >= 1.95 else f"{ratio:.1f} times"
        times = "twice" if times == "2 times" else times
        return (
            f"In the training data, {what} {times} as often for cases with "
            f"{_band_phrase(feature, top)} as for those with {_band_phrase(feature, bottom)} "
            f"({percent(high)} against {percent(low)})."
        )
    means = [b.mean if b.mean is not None else float("nan") for b in bands]
    top, bottom = bands[int(np.nanargmax(means))], bands[int(np.nanargmin(means))]
    assert top.mean is not None and bottom.mean is not None
    return (
        f"In the training data, the average {target} was {number(top.mean)} for cases with "
        f"{_band_phrase(feature, top)}, against {number(bottom.mean)} for those with "
        f"{_band_phrase(feature, bottom)}."
    )


def positive_class(meta: ModelMetadata, holdout: Holdout | None) -> Any:
    """The class whose rate a binary model's sentences speak of: the spec's positive class,
    else the less common class in training (the one a model is usually built to find)."""
    classes = meta.classes or []
    if len(classes) != 2:
        return None
    if meta.evaluation.positive_class is not None:
        return meta.evaluation.positive_class
    counts = holdout.train_class_counts if holdout else None
    if counts and len(counts) == 2 and counts[0] != counts[1]:
        return classes[int(np.argmin(counts))]
    return classes[1]


def data_says(meta: ModelMetadata, holdout: Holdout | None) -> list[tuple[str, str]]:
    """*What the data says*: ``("association", ...)``, then ``("evidence:<feature>", ...)``
    for each feature of ``holdout.evidence``, best first. Empty when there is no evidence
    (models registered before it, or imported without labels)."""
    if holdout is None or not holdout.evidence:
        return []
    target = readable_name(meta.target)
    positive = positive_class(meta, holdout)
    found = [("association", ASSOCIATION)]
    for item in holdout.evidence:
        text = evidence_sentence(
            item, feature_label(meta, item.feature), target, holdout.classes, positive
        )
        found.append((f"evidence:{item.feature}", text))
    return found
