"""The report as one self-contained HTML page: inline CSS, charts as ``data:`` URIs, no scripts.

It is built from what the store holds for a model version: its metadata (``kiln.json``), its
holdout document (``holdout.json``; absent for models registered before it existed, and then
the charts that need it are replaced by a sentence) and, when there is one, the metadata of
the previous version to compare with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.artifact import FeatureKind, Holdout, ModelMetadata, Task
from training.report import charts
from training.report.markup import a as _a
from training.report.markup import e as _e
from training.report.markup import figure as _figure
from training.report.markup import note as _note
from training.report.markup import table as _table
from training.report.sentences import (
    METRIC_NAMES,
    accuracy_sentence,
    comparison_sentence,
    data_sentence,
    drivers_sentence,
    error_sentence,
    files_sentence,
    majority_class,
    missing_sentence,
    mistakes_sentence,
    number,
    per_class_counts,
    precision_sentence,
    purpose_sentence,
    quoted,
    recall_sentence,
    spread_sentence,
)
from training.spec import key_metric

if TYPE_CHECKING:
    from training.drift import DriftResult

__all__ = ["NO_HOLDOUT", "NO_QUALITY", "render_report", "summary"]

NO_HOLDOUT = (
    "This version was registered before Kiln kept its test predictions, so the charts that "
    "need them (and what drives its answers) are not shown; retrain it to get them."
)
NO_QUALITY = (
    "No quality was measured: this model was imported without labels, so Kiln checked only "
    "that its ONNX version answers like the imported model on every sample case, not how often "
    "those answers are right. Import it again with labels (--target) to measure it."
)
SCORE_WORDS = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "r2": "R²"}
STAGE_WORDS = {
    "candidate": "passed its quality checks",
    "rejected": "did not pass its quality checks: kept for inspection, never used",
}
COMPARED = {
    Task.classification: "Each version is measured on its own test cases; higher is better.",
    Task.regression: "Each version is measured on its own test cases; for the errors (mean "
    "absolute, root mean squared) lower is better, for R² higher.",
}
KEY_METRICS = {
    Task.classification: ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc"),
    Task.regression: ("mae", "rmse", "r2"),
}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _description(meta: ModelMetadata) -> str:
    return str(meta.provenance.spec.get("description") or "").strip()


def summary(meta: ModelMetadata, holdout: Holdout | None) -> list[tuple[str, str]]:
    """The plain-language sentences of the first section, each with a key (for tests)."""
    ev = meta.evaluation
    found: list[tuple[str, str]] = [
        ("purpose", purpose_sentence(meta.task.value, meta.target, meta.classes))
    ]
    if meta.task is Task.classification and meta.classes and ev.confusion_matrix:
        classes, matrix = meta.classes, ev.confusion_matrix
        counts = (holdout.train_class_counts if holdout else None) or per_class_counts(matrix)
        accuracy, base = ev.metrics.get("accuracy"), ev.baseline.get("accuracy")
        if accuracy is not None and base is not None:
            majority = majority_class(classes, counts)
            found.append(("accuracy", accuracy_sentence(accuracy, base, majority)))
        positive = ev.positive_class
        if len(classes) == 2 and positive is not None:
            if (precision := ev.metrics.get("precision")) is not None:
                found.append(("precision", precision_sentence(precision, positive)))
            if (recall := ev.metrics.get("recall")) is not None:
                found.append(("recall", recall_sentence(recall, positive)))
        found.append(("mistakes", mistakes_sentence(matrix, classes, positive, meta.imported)))
    elif meta.task is Task.regression:
        mae, base_mae = ev.metrics.get("mae"), ev.baseline.get("mae")
        if mae is not None and base_mae is not None:
            found.append(("error", error_sentence(mae, base_mae)))
        if holdout is not None:
            errors = np.abs(np.asarray(holdout.y_true, float) - np.asarray(holdout.y_pred, float))
            median, p90 = np.quantile(errors, [0.5, 0.9])
            found.append(("spread", spread_sentence(float(median), float(p90))))
    if holdout is not None and holdout.importance:
        ranked = [(f.feature, f.mean) for f in holdout.importance]
        found.append(("drivers", drivers_sentence(ranked)))
    return found


# -- sections ------------------------------------------------------------------------------


def _header(meta: ModelMetadata, generated: datetime) -> str:
    stage = STAGE_WORDS.get(meta.stage.value, f"stage {meta.stage.value}")
    description = _description(meta)
    lead = f'<p class="lead">{_e(description)}</p>' if description else ""
    return (
        "<header>"
        f'<p class="kicker">Model report</p><h1>{_e(meta.name)}</h1>{lead}'
        '<p class="meta">'
        f"Version <code>{_e(meta.version)}</code> · trained "
        f"{meta.provenance.created_at:%d %B %Y, %H:%M} UTC · {_e(stage)} · "
        f"report written {generated:%d %B %Y, %H:%M} UTC"
        "</p></header>"
    )


def _summary_section(meta: ModelMetadata, holdout: Holdout | None) -> str:
    items = "".join(
        f'<li class="sentence" data-key="{_a(key)}">{_e(text)}</li>'
        for key, text in summary(meta, holdout)
    )
    extra = _note(_missing(meta)) if holdout is None else ""
    per_class = ""
    ev = meta.evaluation
    if meta.classes and ev.confusion_matrix and len(meta.classes) > 2:
        per_class = _per_class_table(meta.classes, ev.confusion_matrix)
    return (
        '<section id="summary"><h2>In plain words</h2>'
        f'<ul class="sentences">{items}</ul>{per_class}{extra}</section>'
    )


def _per_class_table(classes: Sequence[Any], matrix: Sequence[Sequence[int]]) -> str:
    rows = []
    for i, c in enumerate(classes):
        true_cases = sum(matrix[i])
        said = sum(row[i] for row in matrix)
        right = matrix[i][i]
        found = f"{right} of {true_cases}" + (f" ({right / true_cases:.0%})" if true_cases else "")
        precise = f"{right} of {said}" + (f" ({right / said:.0%})" if said else "")
        rows.append([_e(quoted(c)), f"{true_cases:,}", _e(found), _e(precise)])
    return _table(
        ["answer", "test cases", "found by the model", "right when it gives this answer"],
        rows,
        "per-class",
    )


def _comparison_section(meta: ModelMetadata, previous: ModelMetadata | None) -> str:
    title = "<h2>Compared with the previous version</h2>"
    if previous is None:
        return (
            f'<section id="comparison">{title}'
            f"{_note('There is no earlier version of this model to compare with.')}</section>"
        )
    key = key_metric(meta.task)
    new, old = meta.evaluation.metrics.get(key), previous.evaluation.metrics.get(key)
    sentence = (
        comparison_sentence(key, new, old, previous.version)
        if new is not None and old is not None
        else f"The previous version is {previous.version}."
    )
    rows = []
    for metric in KEY_METRICS[meta.task]:
        a, b = meta.evaluation.metrics.get(metric), previous.evaluation.metrics.get(metric)
        mark = ' class="key"' if metric == key else ""
        rows.append(
            [
                f"<span{mark}>{_e(METRIC_NAMES.get(metric, metric))}</span>",
                _fmt(a),
                _fmt(b),
            ]
        )
    table = _table(
        [
            "metric",
            f"this version ({meta.version}, {meta.provenance.created_at:%d %b %Y})",
            f"previous ({previous.version}, {previous.provenance.created_at:%d %b %Y})",
        ],
        rows,
        "numbers",
    )
    return (
        f'<section id="comparison">{title}'
        f'<p class="sentence" data-key="comparison">{_e(sentence)}</p>{table}'
        f"{_note(COMPARED[meta.task])}"
        "</section>"
    )


def _performance_section(meta: ModelMetadata, holdout: Holdout | None) -> str:
    parts: list[str] = []
    ev = meta.evaluation
    if meta.task is Task.classification and meta.classes and ev.confusion_matrix:
        classes, positive = meta.classes, ev.positive_class
        parts.append(
            _figure(
                charts.confusion_chart(ev.confusion_matrix, classes),
                "Right and wrong answers",
                "Each row is the true answer, each column what the model said; the diagonal "
                "holds its right answers, every other square a kind of mistake.",
            )
        )
        train_counts = holdout.train_class_counts if holdout else None
        parts.append(
            _figure(
                charts.class_balance_chart(
                    classes, per_class_counts(ev.confusion_matrix), train_counts
                ),
                "How common each answer is",
                "The share of each answer among the cases it learned from and was tested on. "
                "A rare answer is harder to find, and guessing the common one is the baseline.",
            )
        )
        if holdout is not None and holdout.scores is not None:
            scores = np.asarray(holdout.scores, dtype=float)
            parts.append(
                _figure(
                    charts.roc_chart(holdout.y_true, scores, classes, positive),
                    "Finding cases vs raising false alarms",
                    "Moving along the curve trades more cases found for more false alarms. "
                    "The closer it hugs the top left corner, the better; the dashed line is "
                    "guessing. The area under it is the ROC AUC (1 is perfect, 0.5 guessing).",
                )
            )
            parts.append(
                _figure(
                    charts.precision_recall_chart(holdout.y_true, scores, classes, positive),
                    "Catching more vs being right",
                    "How often the model is right when it flags a case, for each share of "
                    "cases it catches. Higher is better; the dashed line is how common "
                    "the answer is.",
                )
            )
            if holdout.score_kind == "probabilities":
                parts.append(
                    _figure(
                        charts.calibration_chart(holdout.y_true, scores, classes, positive),
                        "Can its percentages be taken at face value?",
                        "Cases are grouped by the chance the model gave them; each dot shows "
                        "how often the answer really was that (bigger dots: more cases). On "
                        "the dashed line, '70%' means it happens 7 times in 10.",
                    )
                )
            else:
                parts.append(
                    _note("This model gives scores, not probabilities: no calibration chart.")
                )
    elif meta.task is Task.regression and holdout is not None:
        y_true = [float(v) for v in holdout.y_true]
        y_pred = [float(v) for v in holdout.y_pred]
        parts.append(
            _figure(
                charts.predicted_vs_actual_chart(y_true, y_pred, meta.target),
                "Estimates against the true values",
                "Each dot is one test case; on the dashed line the estimate is exact.",
            )
        )
        parts.append(
            _figure(
                charts.residuals_chart(y_true, y_pred, meta.target),
                "How far off its estimates are",
                "Left: the error of each case against its estimate; errors should scatter "
                "evenly around zero. Right: how many cases have errors of each size.",
            )
        )
    if holdout is None:
        parts.append(_note(_missing(meta)))
    return '<section id="performance"><h2>How well it works</h2>' + "".join(parts) + "</section>"


def _missing(meta: ModelMetadata) -> str:
    """Why there are no test predictions: no labels (an import), or an older registration."""
    return NO_HOLDOUT if meta.quality_measured else NO_QUALITY


def _drivers_section(meta: ModelMetadata, holdout: Holdout | None) -> str:
    title = "<h2>What drives its answers</h2>"
    if holdout is None or not holdout.importance:
        why = _missing(meta) if holdout is None else "Feature importance was not measured."
        return f'<section id="drivers">{title}{_note(why)}</section>'
    score = SCORE_WORDS.get(holdout.importance_scoring or "", holdout.importance_scoring or "")
    ranked = [(f.feature, f.mean, f.std) for f in holdout.importance]
    png = charts.importance_chart(ranked, score)
    caption = (
        f"Each feature is shuffled across the test cases, one at a time, and the drop in the "
        f"model's {score} is measured ({holdout.importance_repeats} shuffles of "
        f"{holdout.importance_rows:,} cases; the whiskers show how much it varied). "
        "A long bar means the model leans on that feature; it says nothing about cause."
    )
    return (
        f'<section id="drivers">{title}{_figure(png, "What drives its answers", caption)}</section>'
    )


def _typical(stats: Any) -> str:
    if stats.kind is FeatureKind.numeric and stats.quantiles:
        q = stats.quantiles
        return _e(
            f"middle half {number(q['p25'])} to {number(q['p75'])}; median {number(q['p50'])}"
        )
    if stats.top:
        top = list(stats.top)[:3]
        return _e(", ".join(t if t else "(empty)" for t in top))
    if stats.length_mean is not None:
        return _e(f"{stats.length_mean:.0f} characters on average")
    return ""


def _data_section(meta: ModelMetadata) -> str:
    ev = meta.evaluation
    sources = [d.source for d in meta.data]
    modified = [d.modified for d in meta.data if d.modified is not None]
    missing = {name: (s.missing, s.count) for name, s in meta.feature_stats.items()}
    sentences = [
        ("data", data_sentence(ev.train_rows, ev.holdout_rows)),
        ("files", files_sentence(sources, modified)),
        ("missing", missing_sentence(missing, "sample" if meta.imported else "training data")),
    ]
    if meta.imported:  # fitted elsewhere: the data it learned from is not known
        checked = meta.verification.rows
        tested = f", and tested on {ev.holdout_rows:,} of them" if meta.quality_measured else ""
        sentences[:2] = [
            (
                "data",
                f"It was fitted outside Kiln and imported; Kiln checked it on {checked:,} sample "
                f"cases{tested}. The figures below describe that sample.",
            )
        ]
    text = "".join(f'<p class="sentence" data-key="{k}">{_e(s)}</p>' for k, s in sentences)
    files = _table(
        ["data", "rows", "last changed", "sha256"],
        [
            [
                _e(d.source),
                f"{d.rows:,}",
                f"{d.modified:%Y-%m-%d %H:%M} UTC" if d.modified else "—",
                f"<code>{_e(d.sha256[:16])}…</code>",
            ]
            for d in meta.data
        ],
        "numbers",
    )
    kinds = {"numeric": "number", "categorical": "category", "text": "text"}
    rows = []
    for feature in meta.features:
        s = meta.feature_stats[feature.name]
        share = s.missing / s.count if s.count else 0.0
        bar = f'<span class="bar"><span style="width:{share * 100:.1f}%"></span></span>'
        rows.append(
            [
                _e(feature.name),
                kinds.get(feature.kind.value, feature.kind.value),
                f"{s.missing:,} ({share:.1%}) {bar}",
                _typical(s),
            ]
        )
    table = _table(["feature", "kind", "missing in training", "typical values"], rows, "features")
    return f'<section id="data"><h2>The data</h2>{text}{files}{table}</section>'


def _appendix(meta: ModelMetadata, holdout: Holdout | None) -> str:
    ev = meta.evaluation
    metric_rows = [
        [
            f"{_e(METRIC_NAMES.get(k, k))} <code>{_e(k)}</code>",
            _fmt(v),
            _fmt(ev.baseline.get(k)),
        ]
        for k, v in ev.metrics.items()
    ]
    metrics = _table(["metric", "model", "baseline"], metric_rows, "numbers")
    gate_rows = [
        [
            f"<code>{_e(c.metric)} {_e(c.op)} {c.threshold:g}</code>",
            _fmt(c.value),
            "passed" if c.passed else "<strong>failed</strong>",
        ]
        for c in meta.gate.checks
    ]
    gate = (
        _table(["quality check", "value", "result"], gate_rows, "numbers")
        if gate_rows
        else _note("No quality checks are set for this model.")
    )
    v = meta.verification
    prov = meta.provenance
    facts: list[tuple[str, str]] = [
        ("estimator", f"<code>{_e(meta.estimator)}</code>"),
        ("parameters", f"<code>{_e(json.dumps(meta.estimator_params, sort_keys=True))}</code>"),
        ("baseline", _e(ev.baseline_strategy)),
        (
            "holdout",
            _e(
                f"{ev.holdout_fraction:.0%} of the rows ({ev.holdout_rows:,}), seed {ev.seed}"
                + (f"; positive class {quoted(ev.positive_class)}" if ev.positive_class else "")
            ),
        ),
        (
            "ONNX verification",
            _e(
                f"{v.rows:,} rows, largest difference {v.max_abs_diff:.2g} "
                f"(tolerance {v.atol:g} + {v.rtol:g}·|value|)"
                + (
                    f", {v.label_mismatches} label mismatches"
                    if v.label_mismatches is not None
                    else ""
                )
                + (": passed" if v.passed else ": failed")
            ),
        ),
        ("ONNX sha256", f"<code>{_e(meta.onnx_sha256)}</code>"),
        ("ONNX opset", f"<code>{_e(json.dumps(prov.opset, sort_keys=True))}</code>"),
        ("ONNX nodes", f"<code>{_e(json.dumps(meta.onnx_nodes or {}, sort_keys=True))}</code>"),
        (
            "code",
            f"<code>{_e(prov.git_commit or 'unknown')}</code>"
            + (" (with local changes)" if prov.git_dirty else ""),
        ),
        ("created", _e(f"{prov.created_at:%Y-%m-%d %H:%M:%S} UTC")),
        ("spec file", _e(prov.spec_path or "—")),
        *(
            [
                (
                    "imported from",
                    _e(
                        f"{meta.origin.source or 'an object in Python'} ({meta.origin.format}"
                        + (f", sha256 {meta.origin.sha256}" if meta.origin.sha256 else "")
                        + f"), a {meta.origin.model_class}"
                    ),
                )
            ]
            if meta.origin is not None and meta.imported
            else []
        ),
        ("metadata schema", str(meta.schema_version)),
    ]
    if holdout is not None:
        facts.append(
            (
                "holdout document",
                _e(
                    f"schema {holdout.schema_version}; {holdout.rows:,} of "
                    f"{holdout.holdout_rows:,} rows; importance by {holdout.importance_scoring} "
                    f"on {holdout.importance_rows:,} rows, {holdout.importance_repeats} repeats"
                ),
            )
        )
    for d in meta.data:
        facts.append((f"data {d.source}", f"<code>sha256 {_e(d.sha256)}</code>"))
    fact_rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in facts)
    libraries = ", ".join(
        f"{_e(k)} {_e(v)}" for k, v in sorted(prov.libraries.items()) if k != "python"
    )
    spec = _e(json.dumps(prov.spec, indent=2, sort_keys=False))
    return (
        '<section id="appendix"><h2>Technical appendix</h2>'
        f"<h3>Every metric, on the test cases</h3>{metrics}"
        f"<h3>Quality checks</h3>{gate}"
        f'<h3>Model and fingerprints</h3><table class="facts"><tbody>{fact_rows}</tbody></table>'
        f'<h3>Library versions</h3><p class="small">python {_e(prov.python)}, {libraries}</p>'
        f"<h3>The spec, as resolved for this run</h3><pre>{spec}</pre>"
        "</section>"
    )


CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif;
  color: #1d232a; background: #fff; margin: 0; line-height: 1.5; font-size: 16px; }
main { max-width: 900px; margin: 0 auto; padding: 32px 28px 64px; }
header { border-bottom: 3px solid #1f5aa6; padding-bottom: 14px; margin-bottom: 8px; }
.kicker { text-transform: uppercase; letter-spacing: .12em; color: #1f5aa6; font-weight: bold;
  font-size: 13px; margin: 0; }
h1 { font-size: 34px; margin: 2px 0 6px; }
.lead { font-size: 19px; margin: 4px 0 8px; }
.meta { color: #5a6570; font-size: 13.5px; margin: 0; }
h2 { font-size: 23px; margin: 34px 0 10px; color: #1f5aa6; border-bottom: 1px solid #d5dbe1;
  padding-bottom: 4px; break-after: avoid; }
h3 { font-size: 17px; margin: 22px 0 8px; break-after: avoid; }
ul.sentences { list-style: none; padding: 0; margin: 0; }
ul.sentences li { background: #f2f6fb; border-left: 5px solid #1f5aa6; padding: 10px 14px;
  margin: 0 0 8px; font-size: 18px; break-inside: avoid; }
p.sentence { font-size: 17px; }
.note { color: #5a6570; font-style: italic; }
figure { margin: 18px 0 26px; break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto;
  border: 1px solid #e3e7ec; }
figcaption { font-size: 14.5px; color: #3b444d; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; margin: 10px 0 14px; font-size: 14px;
  break-inside: auto; }
tr { break-inside: avoid; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e7ec;
  vertical-align: top; }
thead th { background: #f2f6fb; }
table.numbers td + td, table.numbers th + th { text-align: right;
  font-variant-numeric: tabular-nums; }
table.facts th { width: 28%; font-weight: normal; color: #5a6570; }
span.key { font-weight: bold; }
.bar { display: inline-block; width: 80px; height: 9px; background: #e9edf1;
  vertical-align: middle; margin-left: 6px; }
.bar span { display: block; height: 100%; background: #d9541e; }
code, pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
code { overflow-wrap: anywhere; }
pre { background: #f6f8fa; padding: 10px; white-space: pre-wrap; overflow-wrap: anywhere;
  border: 1px solid #e3e7ec; }
.small { font-size: 13px; }
footer { margin-top: 40px; color: #8a949e; font-size: 12px; }
@media print {
  body { font-size: 13px; }
  ul.sentences li { font-size: 15px; }
  p.sentence { font-size: 14.5px; }
  figure img { max-height: 118mm; width: auto; }
  main { padding: 0; max-width: none; }
  h2 { margin-top: 22px; }
  #appendix { break-before: page; }
}
"""


def render_report(
    meta: ModelMetadata,
    holdout: Holdout | None,
    previous: ModelMetadata | None = None,
    *,
    generated: datetime | None = None,
    drift: DriftResult | None = None,
) -> str:
    """The whole report as one HTML document; with ``drift`` (``kiln drift --report``), the
    section "Has the data changed since training?" follows the summary."""
    generated = generated or datetime.now(UTC)
    changes = ""
    if drift is not None:
        from training.report.changes import changes_section

        changes = changes_section(drift)
    body = "".join(
        [
            _header(meta, generated),
            _summary_section(meta, holdout),
            changes,
            _comparison_section(meta, previous),
            _performance_section(meta, holdout),
            _drivers_section(meta, holdout),
            _data_section(meta),
            _appendix(meta, holdout),
            f"<footer>Written by Kiln from the model store ({_e(meta.tag)}).</footer>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(meta.name)} {_e(meta.version)}: model report</title>"
        f"<style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
