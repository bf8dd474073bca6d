"""What the client's document says, as records for its template (templates/client.html.j2).

Built from the store alone (:class:`Sources`): the version's metadata, its holdout document
(absent for models registered before it existed: the charts that need it become a sentence),
the previous version's metadata and, after ``kiln retrain``, its decision. The document has
four sections in this order: in plain words (with how sure we are), what the data says, how
well it works, compared with the previous version; no metric names, no JSON, no appendix:
those are the technical document's (training/report/technical.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.artifact import Holdout, ModelMetadata, Task
from training.report import charts
from training.report.blocks import Block, Figure, Note, Sentence, Table, figure
from training.report.datawords import data_says, positive_class
from training.report.files import TECHNICAL_HTML
from training.report.sentences import (
    comparison_words,
    data_sentence,
    files_sentence,
    missing_sentence,
    number,
    plain_words,
    quoted,
)
from training.report.words import day, feature_label, join_words, percent, plural, readable_name

if TYPE_CHECKING:
    from kiln.production import Decision
    from training.drift import DriftResult
    from training.report.changes import Changes

__all__ = [
    "NO_HOLDOUT",
    "NO_QUALITY",
    "ClientDocument",
    "Finding",
    "Header",
    "Sources",
    "client_document",
    "summary",
]

NO_HOLDOUT = (
    "This version was registered before Kiln kept its test predictions, so the charts that "
    "need them (and what drives its answers) are not shown; retrain it to get them."
)
NO_QUALITY = (
    "No quality was measured: this model was imported without labels, so Kiln checked only "
    "that its ONNX version answers like the imported model on every sample case, not how often "
    "those answers are right. Import it again with labels (--target) to measure it."
)
STAGE_WORDS = {
    "candidate": "passed its quality checks",
    "rejected": "did not pass its quality checks: kept for inspection, never used",
}
UNMEASURED_STAGE = "imported without labels: its quality was not measured"
# What the importance chart's axis calls each scoring, in words (never the metric's name).
IMPORTANCE_WORDS = {
    "roc_auc": "how well it tells the answers apart",
    "accuracy": "right answers",
    "r2": "how much of the differences it explains",
}


@dataclass(frozen=True)
class Sources:
    """Everything a report is made from; ``drift`` only with ``kiln drift --report``."""

    meta: ModelMetadata
    holdout: Holdout | None
    previous: ModelMetadata | None = None
    decision: Decision | None = None
    drift: DriftResult | None = None
    in_service: bool | None = None  # whether the production record serves this version now


@dataclass(frozen=True)
class Header:
    """The top of both documents."""

    name: str
    description: str
    version: str
    tag: str
    trained: str
    stage: str
    generated: str


@dataclass(frozen=True)
class Finding:
    """One feature of "What the data says": its sentence and its chart."""

    feature: str
    sentence: str
    figure: Figure | None = None


@dataclass(frozen=True)
class ClientDocument(Header):
    summary: Sequence[Sentence]
    sure: Sequence[Sentence]
    learned: Sequence[Sentence]
    summary_notes: Sequence[Block]
    performance: Sequence[Block]
    comparison: Sequence[Block]
    evidence: Sequence[Finding] = ()
    evidence_lead: Sequence[Block] = ()
    changes: Changes | None = None
    technical_href: str = TECHNICAL_HTML


def header(meta: ModelMetadata, generated: datetime) -> Header:
    return Header(
        name=meta.name,
        description=str(meta.provenance.spec.get("description") or "").strip(),
        version=meta.version,
        tag=meta.tag,
        trained=day(meta.provenance.created_at, time=True),
        stage=(
            STAGE_WORDS.get(meta.stage.value, f"stage {meta.stage.value}")
            if meta.quality_measured
            else UNMEASURED_STAGE
        ),
        generated=day(generated, time=True),
    )


def missing_words(meta: ModelMetadata) -> str:
    """Why there are no test predictions: no labels (an import), or an older registration."""
    return NO_HOLDOUT if meta.quality_measured else NO_QUALITY


# The keys of plain_words() that say how sure the figures are: under "How sure we are".
SURE_KEYS = frozenset({"intervals", "small-test"})


def summary(meta: ModelMetadata, holdout: Holdout | None) -> list[Sentence]:
    """The plain-language sentences of the first section (sentences.plain_words)."""
    return [Sentence(k, t) for k, t in plain_words(meta, holdout) if k not in SURE_KEYS]


def evidence(meta: ModelMetadata, holdout: Holdout | None) -> tuple[list[Block], list[Finding]]:
    """What the data says (datawords.data_says): its lead (an association, not a cause), and
    for each feature of the holdout document's ``evidence`` its sentence and chart."""
    said = dict(data_says(meta, holdout))
    if holdout is None or not holdout.evidence or not said:
        return [], []
    regression = meta.task is Task.regression
    target = readable_name(meta.target)
    lead: list[Block] = [Sentence(k, t) for k, t in said.items() if not k.startswith("evidence:")]
    found = []
    for item in holdout.evidence:
        label = feature_label(meta, item.feature)
        chart = charts.evidence_chart(
            label,
            item.bands,
            None if regression else holdout.classes or meta.classes,
            f"average {target}" if regression else None,
            positive_class(meta, holdout),
        )
        caption = (
            f"The {'average ' + target if regression else 'answers'} among the "
            f"{item.rows:,} training cases, by {label}; under each bar, how many cases it holds."
        )
        sentence = said.get(f"evidence:{item.feature}", "")
        shown = figure(f"evidence-{item.feature}", chart, f"By {label}", caption)
        found.append(Finding(item.feature, sentence, shown))
    return lead, found


def _sure(meta: ModelMetadata, holdout: Holdout | None) -> list[Sentence]:
    """How sure we are: what the ranges mean, a warning for a small test set, and how many
    cases the figures rest on."""
    ev = meta.evaluation
    found = [Sentence(k, t) for k, t in plain_words(meta, holdout) if k in SURE_KEYS]
    if meta.imported:  # fitted elsewhere: the data it learned from is not known
        tested = f", and tested on {ev.holdout_rows:,} of them" if meta.quality_measured else ""
        found.append(
            Sentence(
                "data",
                f"It was fitted outside Kiln and imported; Kiln checked it on "
                f"{meta.verification.rows:,} sample cases{tested}.",
            )
        )
    else:
        found.append(Sentence("data", data_sentence(ev.train_rows, ev.holdout_rows)))
    return found


def _learned(meta: ModelMetadata) -> list[Sentence]:
    modified = [d.modified for d in meta.data if d.modified is not None]
    missing = {name: (s.missing, s.count) for name, s in meta.feature_stats.items()}
    found = (
        []
        if meta.imported
        else [Sentence("files", files_sentence([d.source for d in meta.data], modified))]
    )
    data = "sample" if meta.imported else "training data"
    found.append(Sentence("missing", missing_sentence(missing, data)))
    return found


def _classification_charts(meta: ModelMetadata, holdout: Holdout | None) -> list[Block]:
    ev = meta.evaluation
    assert meta.classes is not None and ev.confusion_matrix is not None
    classes, positive = meta.classes, ev.positive_class
    blocks: list[Block] = [
        figure(
            "confusion",
            charts.confusion_chart(ev.confusion_matrix, classes, positive),
            "Right and wrong answers",
            "Each row is the true answer, each column what the model said, in numbers of test "
            "cases; the diagonal holds its right answers, every other square a kind of mistake.",
        ),
    ]
    if holdout is None or holdout.scores is None:
        return blocks
    scores = np.asarray(holdout.scores, dtype=float)
    if len(classes) == 2:
        blocks += [
            figure(
                "roc",
                charts.roc_chart(holdout.y_true, scores, classes, positive),
                "Finding cases vs raising false alarms",
                "Moving along the curve trades more cases found for more false alarms. The "
                "closer it hugs the top left corner, the better; the dashed line is guessing.",
            ),
            figure(
                "precision-recall",
                charts.precision_recall_chart(holdout.y_true, scores, classes, positive),
                "Catching more vs being right",
                "How often the model is right when it flags a case, for each share of cases it "
                "catches. Higher is better; the dashed line is how common the answer is.",
            ),
        ]
    else:  # several classes: bars per answer; one curve per class would lie on the others
        blocks.append(
            figure(
                "class-rates",
                charts.class_rates_chart(ev.confusion_matrix, classes),
                "How well it does on each answer",
                "For each answer: the share of its test cases the model found, and how often "
                "it was right when it gave that answer; each bar says how many cases it rests on.",
            )
        )
    if holdout.score_kind != "probabilities":
        blocks.append(Note("This model gives scores, not chances: no chart of its chances."))
    elif not charts.show_calibration(holdout.rows):
        blocks.append(
            Note(
                f"Whether its chances can be taken at face value is not shown: that needs at "
                f"least {charts.CALIBRATION_MIN_CASES:,} test cases, and there are "
                f"{holdout.rows:,}; fewer make the chart zigzag with chance alone."
            )
        )
    else:
        blocks.append(
            figure(
                "calibration",
                charts.calibration_chart(holdout.y_true, scores, classes, positive),
                "Can its percentages be taken at face value?",
                "Cases are grouped by the chance the model gave them; each dot shows how often "
                "the answer really was that (bigger dots: more cases). On the dashed line, "
                "'70%' means it happens 7 times in 10.",
            )
        )
    return blocks


def per_class_table(
    classes: Sequence[Any],
    matrix: Sequence[Sequence[int]],
    train_counts: Sequence[int] | None = None,
) -> Table:
    """Per answer: training and test cases, how many it found, how often it is right when it
    says it (the technical document's; the client's has the chart of the same counts)."""
    rows: list[Sequence[str]] = []
    for i, c in enumerate(classes):
        true_cases = sum(matrix[i])
        said = sum(row[i] for row in matrix)
        right = matrix[i][i]
        found = f"{right} of {true_cases}" + (f" ({right / true_cases:.0%})" if true_cases else "")
        precise = f"{right} of {said}" + (f" ({right / said:.0%})" if said else "")
        trained = f"{train_counts[i]:,}" if train_counts else "—"
        rows.append([quoted(c), trained, f"{true_cases:,}", found, precise])
    return Table(
        [
            "answer",
            "training cases",
            "test cases",
            "found by the model",
            "right when it gives this answer",
        ],
        rows,
        "per-class",
    )


def _regression_charts(meta: ModelMetadata, holdout: Holdout) -> list[Block]:
    y_true = [float(v) for v in holdout.y_true]
    y_pred = [float(v) for v in holdout.y_pred]
    target = readable_name(meta.target)
    return [
        figure(
            "estimates",
            charts.predicted_vs_actual_chart(y_true, y_pred, target),
            "Estimates against the true values",
            "Each dot is one test case; on the dashed line the estimate is exact.",
        ),
        figure(
            "errors",
            charts.error_sizes_chart(y_true, y_pred, target),
            "How far off its estimates are",
            f"How many test cases are off by how much, in {target}; the lines mark "
            "where half and nine in ten of the cases lie.",
        ),
    ]


def importance_figure(meta: ModelMetadata, holdout: Holdout) -> Figure | None:
    if not holdout.importance:
        return None
    scoring = holdout.importance_scoring or ""
    words = IMPORTANCE_WORDS.get(scoring, "its score")
    ranked = [(feature_label(meta, f.feature), f.mean, f.std) for f in holdout.importance]
    return figure(
        "importance",
        charts.importance_chart(ranked, words),
        "What its answers depend on",
        f"Each feature is shuffled across {holdout.importance_rows:,} test cases, one at a "
        f"time, {holdout.importance_repeats} times, and the loss in {words} is measured (the "
        "whiskers show how much it varied). A long bar means the model leans on that feature; "
        "it says nothing about cause.",
    )


def _sample_answers(meta: ModelMetadata) -> list[Block]:
    """What an unmeasured classifier answered on its sample (the drift reference's shares):
    what can be shown without knowing the right answers."""
    answers = meta.reference.prediction if meta.reference is not None else None
    if answers is None or not answers.categories or not answers.rows:
        return []
    shares = [
        f"{quoted(c)} for {percent(share)}"
        for c, share in zip(answers.categories, answers.shares, strict=False)
        if share > 0
    ]
    return [
        Sentence(
            "sample-answers",
            f"On the {plural(answers.rows, 'sample case')} given at import it answered "
            f"{join_words(shares)} of them.",
        )
    ]


def performance(meta: ModelMetadata, holdout: Holdout | None) -> list[Block]:
    blocks: list[Block] = []
    ev = meta.evaluation
    if meta.task is Task.classification and meta.classes and ev.confusion_matrix:
        blocks += _classification_charts(meta, holdout)
    elif meta.task is Task.regression and holdout is not None:
        blocks += _regression_charts(meta, holdout)
    if not meta.quality_measured:
        blocks += [Note(NO_QUALITY), *_sample_answers(meta)]
    elif holdout is None:
        blocks.append(Note(NO_HOLDOUT))
    elif (chart := importance_figure(meta, holdout)) is not None:
        blocks.append(chart)
    return blocks


def _plain_measures(meta: ModelMetadata) -> list[tuple[str, str]]:
    """The measures the client's comparison shows, each with its name in words."""
    if meta.task is Task.regression:
        return [("mae", f"average error (in {meta.target})"), ("r2", "share of its spread found")]
    found = [("accuracy", "right answers")]
    positive = meta.evaluation.positive_class
    if meta.classes and len(meta.classes) == 2 and positive is not None:
        found += [
            ("precision", f"right when it says {quoted(positive)}"),
            ("recall", f"{quoted(positive)} cases found"),
        ]
    else:
        found.append(("balanced_accuracy", "right answers, each answer weighted alike"))
    return found


def _plain_value(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    return number(value) if metric == "mae" else f"{value:.0%}"


def comparison(sources: Sources) -> list[Block]:
    """In words first (sentences.comparison_words: put into service or kept out, and why),
    then the numbers, by name in words."""
    meta, previous = sources.meta, sources.previous
    words = comparison_words(meta, previous, sources.decision, in_service=sources.in_service)
    blocks: list[Block] = [Note(t) if k == "no-previous" else Sentence(k, t) for k, t in words]
    if previous is None:
        return blocks
    rows = [
        [
            name,
            _plain_value(m, meta.evaluation.metrics.get(m)),
            _plain_value(m, previous.evaluation.metrics.get(m)),
        ]
        for m, name in _plain_measures(meta)
    ]
    blocks.append(
        Table(
            [
                "",
                f"this version ({meta.version}, {day(meta.provenance.created_at)})",
                f"previous ({previous.version}, {day(previous.provenance.created_at)})",
            ],
            rows,
            "numbers",
        )
    )
    blocks.append(Note("Each version is measured on its own test cases."))
    return blocks


def client_document(
    sources: Sources, generated: datetime, changes: Changes | None = None
) -> ClientDocument:
    meta, holdout = sources.meta, sources.holdout
    lead, findings = evidence(meta, holdout)
    return ClientDocument(
        **vars(header(meta, generated)),
        summary=summary(meta, holdout),
        sure=_sure(meta, holdout),
        learned=_learned(meta),
        # plain_words says itself when nothing was measured; this is for older registrations
        summary_notes=[Note(NO_HOLDOUT)] if holdout is None and meta.quality_measured else [],
        performance=performance(meta, holdout),
        comparison=comparison(sources),
        evidence=findings,
        evidence_lead=lead,
        changes=changes,
    )
