"""The reports' "Has the data changed since training?" section, from :func:`training.drift.
file_drift`: one sentence per feature that changed, in plain words, with a chart of its
training and new shares per bin; one sentence when nothing did (the client's document), and
every feature's drift score with how it is measured (the technical document). Only ``kiln
drift --report`` writes it: the section describes files, and the store alone does not know
which. The templates' macros are in templates/changes.html.j2."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from training.drift import DriftResult, FeatureDrift
from training.report import charts
from training.report.blocks import Figure, Sentence, Table, figure
from training.report.sentences import ITEMS, count, drift_sentence, no_drift_sentence

__all__ = ["MAX_CHARTS", "Changes", "changes_sentences", "drift_changes"]

MAX_CHARTS = 12  # features charted, largest drift first; the table lists every one

HOW = (
    "Each feature's values are sorted into the bins training defined (a tenth of the training "
    "cases each for numbers, the most common categories for the rest, and one for missing "
    "values), and the new cases' shares are compared with training's. The drift score (the "
    "population stability index) is 0 for the same spread; below 0.1 is little change, 0.1 to "
    "0.2 some, above 0.2 a shift worth looking at."
)
COARSE = (
    "This model was registered before Kiln stored training bins, so the bins are the ten "
    "equal-width ranges of its training statistics: coarser, and the scores less sensitive."
)
ANSWERS = "on the test cases"  # what the model's answers are compared with: the holdout's


def _words(f: FeatureDrift) -> str:
    return f.describe(ITEMS, ANSWERS if f.kind is None else None)


def _score(f: FeatureDrift) -> str:
    return "—" if math.isnan(f.psi) else f"{f.psi:.3f}"


def changes_sentences(drift: DriftResult) -> list[Sentence]:
    """The section's sentences, each with a key (for tests): one per feature that changed,
    or one saying nothing did; the model's answers when they changed too."""
    changed = drift.drifting
    if not changed:
        found = [
            Sentence(
                "no-drift",
                no_drift_sentence(
                    len(drift.features), drift.rows - drift.refused, len(drift.files)
                ),
            )
        ]
    else:
        found = [
            Sentence(
                f"drift-{f.feature}",
                drift_sentence(f.feature, f.verdict == "shifted", _words(f)),
            )
            for f in changed
        ]
    answers = drift.prediction
    if answers is not None and answers.verdict in ("shifted", "some change"):
        found.append(
            Sentence("drift-prediction", f"Its answers have changed too: {_words(answers)}.")
        )
    return found


def _name(f: FeatureDrift) -> str:
    return "Its answers" if f.kind is None else f.feature


def _chart(f: FeatureDrift) -> Figure:
    reference = "test cases" if f.kind is None else "training"
    png = charts.drift_chart(_name(f), f.labels, f.expected, f.actual, reference)
    caption = (
        f"The share of cases in each range or category, in {reference} and in the new data "
        f"({f.verdict})."
    )
    return figure(f"drift-{_name(f)}", png, f"{_name(f)}: {reference} and new data", caption)


@dataclass(frozen=True)
class Changes:
    """The section's content: ``sentences`` and ``figures`` for the client's document,
    ``table`` and ``notes`` for the technical one; ``lead`` for both."""

    lead: str
    sentences: Sequence[Sentence]
    figures: Sequence[Figure]
    table: Table
    notes: Sequence[str]


def drift_changes(drift: DriftResult) -> Changes:
    files = ", ".join(drift.files)
    lead = (
        f"Compared: {count(drift.rows, 'new case')} from {files} with the cases "
        f"{drift.model} learned from."
    )
    if drift.refused:
        were = "was" if drift.refused == 1 else "were"
        lead += (
            f" {count(drift.refused, 'case')} with values the model cannot take (text in a "
            f"number column, for one) {were} left out."
        )
    shown = [*drift.drifting[:MAX_CHARTS]]
    if drift.prediction is not None and drift.prediction.verdict in ("shifted", "some change"):
        shown.append(drift.prediction)
    rows = [
        [_name(f), _score(f), f.verdict, _words(f)]
        for f in [*drift.features, *([drift.prediction] if drift.prediction else [])]
    ]
    return Changes(
        lead=lead,
        sentences=changes_sentences(drift),
        figures=[_chart(f) for f in shown],
        table=Table(["feature", "drift score", "verdict", "biggest change"], rows, "features"),
        notes=[HOW, *([COARSE] if drift.basis == "statistics" else [])],
    )
