"""The report's "Has the data changed since training?" section, from :func:`training.drift.
file_drift`: one sentence per feature that changed, in plain words, with a chart of its
training and new shares per bin; one sentence when nothing did. Only ``kiln drift --report``
writes it: the section describes files, and the store alone does not know which."""

from __future__ import annotations

import math

from training.drift import DriftResult, FeatureDrift
from training.report import charts
from training.report.markup import e, figure, note, table
from training.report.sentences import ITEMS, count, drift_sentence, no_drift_sentence

__all__ = ["MAX_CHARTS", "changes_section", "changes_sentences"]

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


def changes_sentences(drift: DriftResult) -> list[tuple[str, str]]:
    """The section's sentences, each with a key (for tests): one per feature that changed,
    or one saying nothing did; the model's answers when they changed too."""
    changed = drift.drifting
    if not changed:
        found = [
            (
                "no-drift",
                no_drift_sentence(
                    len(drift.features), drift.rows - drift.refused, len(drift.files)
                ),
            )
        ]
    else:
        found = [
            (
                f"drift-{f.feature}",
                drift_sentence(f.feature, f.verdict == "shifted", _words(f)),
            )
            for f in changed
        ]
    answers = drift.prediction
    if answers is not None and answers.verdict in ("shifted", "some change"):
        found.append(("drift-prediction", f"Its answers have changed too: {_words(answers)}."))
    return found


def _name(f: FeatureDrift) -> str:
    return "Its answers" if f.kind is None else f.feature


def _chart(f: FeatureDrift) -> str:
    reference = "test cases" if f.kind is None else "training"
    png = charts.drift_chart(_name(f), f.labels, f.expected, f.actual, reference)
    caption = (
        f"The share of cases in each range or category, in {reference} and in the new data "
        f"(drift score {_score(f)}: {f.verdict})."
    )
    return figure(png, f"{_name(f)}: {reference} and new data", caption)


def changes_section(drift: DriftResult) -> str:
    """The whole section as HTML."""
    title = '<section id="changes"><h2>Has the data changed since training?</h2>'
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
    sentences = "".join(
        f'<li class="sentence" data-key="{key}">{e(text)}</li>'
        for key, text in changes_sentences(drift)
    )
    shown = [*drift.drifting[:MAX_CHARTS]]
    if drift.prediction is not None and drift.prediction.verdict in ("shifted", "some change"):
        shown.append(drift.prediction)
    figures = "".join(_chart(f) for f in shown)
    rows = [
        [e(_name(f)), _score(f), e(f.verdict), e(_words(f))]
        for f in [*drift.features, *([drift.prediction] if drift.prediction else [])]
    ]
    listing = table(["feature", "drift score", "verdict", "biggest change"], rows, "features")
    notes = note(HOW) + (note(COARSE) if drift.basis == "statistics" else "")
    return (
        f"{title}<p>{e(lead)}</p>"
        f'<ul class="sentences">{sentences}</ul>{figures}{listing}{notes}</section>'
    )
