"""What the technical document says, as records for its template (templates/technical.html.j2).

The data team's companion of the client's report: every metric beside the baseline's, the
quality checks, each answer's counts, the comparison with the previous version by metric,
permutation importance in numbers, the data files and features, ONNX verification, the
estimator's parameters, library versions, fingerprints (ONNX, data, code) and the spec as
resolved. Everything the client's document leaves out is here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kiln.artifact import FeatureKind, Holdout, ModelMetadata, Task
from training.report.blocks import Block, Cell, Note, Sentence, Table
from training.report.context import (
    Header,
    Sources,
    header,
    missing_words,
    per_class_table,
)
from training.report.files import CLIENT_HTML
from training.report.sentences import (
    METRIC_NAMES,
    comparison_sentence,
    data_sentence,
    files_sentence,
    missing_sentence,
    number,
    quoted,
)
from training.spec import key_metric

if TYPE_CHECKING:
    from training.report.changes import Changes

__all__ = ["KEY_METRICS", "TechnicalDocument", "technical_document"]

KEY_METRICS = {
    Task.classification: ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc"),
    Task.regression: ("mae", "rmse", "r2"),
}
COMPARED = {
    Task.classification: "Each version is measured on its own test cases; higher is better.",
    Task.regression: "Each version is measured on its own test cases; for the errors (mean "
    "absolute, root mean squared) lower is better, for R² higher.",
}
KINDS = {"numeric": "number", "categorical": "category", "text": "text"}


@dataclass(frozen=True)
class TechnicalDocument(Header):
    metrics: Table
    metric_notes: Sequence[Block]
    gate: Sequence[Block]
    per_class: Table | None
    comparison: Sequence[Block]
    importance: Sequence[Block]
    data_sentences: Sequence[Sentence]
    files: Table
    features: Table
    facts: Sequence[tuple[str, str | Cell]]
    libraries: str
    spec: str
    changes: Changes | None = None
    client_href: str = CLIENT_HTML


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _metrics(meta: ModelMetadata) -> Table:
    ev = meta.evaluation
    rows = [
        [f"{METRIC_NAMES.get(k, k)} ({k})", _fmt(v), _fmt(ev.baseline.get(k))]
        for k, v in ev.metrics.items()
    ]
    return Table(["metric", "model", f"baseline ({ev.baseline_strategy})"], rows, "numbers")


def _gate(meta: ModelMetadata) -> list[Block]:
    if not meta.gate.checks:
        return [Note("No quality checks are set for this model.")]
    rows = [
        [
            Cell(f"{c.metric} {c.op} {c.threshold:g}", "code"),
            _fmt(c.value),
            "passed" if c.passed else Cell("failed", "strong"),
        ]
        for c in meta.gate.checks
    ]
    return [Table(["quality check", "value", "result"], rows, "numbers")]


def _comparison(meta: ModelMetadata, previous: ModelMetadata | None) -> list[Block]:
    if previous is None:
        return [Note("There is no earlier version of this model to compare with.")]
    key = key_metric(meta.task)
    new, old = meta.evaluation.metrics.get(key), previous.evaluation.metrics.get(key)
    blocks: list[Block] = []
    if new is not None and old is not None:
        blocks.append(Sentence("comparison", comparison_sentence(key, new, old, previous.version)))
    rows = [
        [
            Cell(METRIC_NAMES.get(m, m), "key") if m == key else METRIC_NAMES.get(m, m),
            _fmt(meta.evaluation.metrics.get(m)),
            _fmt(previous.evaluation.metrics.get(m)),
        ]
        for m in KEY_METRICS[meta.task]
    ]
    header = [
        "metric",
        f"this version ({meta.version}, {meta.provenance.created_at:%d %b %Y})",
        f"previous ({previous.version}, {previous.provenance.created_at:%d %b %Y})",
    ]
    return [*blocks, Table(header, rows, "numbers"), Note(COMPARED[meta.task])]


def _importance(meta: ModelMetadata, holdout: Holdout | None) -> list[Block]:
    if holdout is None or not holdout.importance:
        return [Note(missing_words(meta) if holdout is None else "Importance was not measured.")]
    scoring = holdout.importance_scoring or ""
    rows = [
        [f.feature, f"{f.mean:.4f}", f"{f.std:.4f}"]
        for f in sorted(holdout.importance, key=lambda f: -f.mean)
    ]
    return [
        Table(
            ["feature", f"mean drop in {METRIC_NAMES.get(scoring, scoring)}", "std"],
            rows,
            "numbers",
        ),
        Note(
            f"Permutation importance on the raw features: {holdout.importance_repeats} "
            f"repeats on {holdout.importance_rows:,} holdout rows, scored by {scoring}."
        ),
    ]


def _typical(stats: Any) -> str:
    if stats.kind is FeatureKind.numeric and stats.quantiles:
        q = stats.quantiles
        return f"middle half {number(q['p25'])} to {number(q['p75'])}; median {number(q['p50'])}"
    if stats.top:
        return ", ".join(t if t else "(empty)" for t in list(stats.top)[:3])
    if stats.length_mean is not None:
        return f"{stats.length_mean:.0f} characters on average"
    return ""


def _data(meta: ModelMetadata) -> tuple[list[Sentence], Table, Table]:
    ev = meta.evaluation
    modified = [d.modified for d in meta.data if d.modified is not None]
    missing = {name: (s.missing, s.count) for name, s in meta.feature_stats.items()}
    sentences = [
        Sentence("data", data_sentence(ev.train_rows, ev.holdout_rows)),
        Sentence("files", files_sentence([d.source for d in meta.data], modified)),
        Sentence(
            "missing", missing_sentence(missing, "sample" if meta.imported else "training data")
        ),
    ]
    files = Table(
        ["data", "rows", "last changed", "sha256"],
        [
            [
                d.source,
                f"{d.rows:,}",
                f"{d.modified:%Y-%m-%d %H:%M} UTC" if d.modified else "—",
                Cell(d.sha256, "code"),
            ]
            for d in meta.data
        ],
        "files",
    )
    rows: list[Sequence[str | Cell]] = []
    for feature in meta.features:
        s = meta.feature_stats[feature.name]
        share = s.missing / s.count if s.count else 0.0
        rows.append(
            [
                feature.name,
                KINDS.get(feature.kind.value, feature.kind.value),
                Cell(f"{s.missing:,} ({share:.1%})", "bar", share),
                _typical(s),
            ]
        )
    features = Table(["feature", "kind", "missing in training", "typical values"], rows, "features")
    return sentences, files, features


def _facts(meta: ModelMetadata, holdout: Holdout | None) -> list[tuple[str, str | Cell]]:
    ev, v, prov = meta.evaluation, meta.verification, meta.provenance
    mismatches = (
        f", {v.label_mismatches} label mismatches" if v.label_mismatches is not None else ""
    )
    positive = f"; positive class {quoted(ev.positive_class)}" if ev.positive_class else ""
    facts: list[tuple[str, str | Cell]] = [
        ("estimator", Cell(meta.estimator, "code")),
        ("parameters", Cell(json.dumps(meta.estimator_params, sort_keys=True), "code")),
        ("baseline", ev.baseline_strategy),
        (
            "holdout",
            f"{ev.holdout_fraction:.0%} of the rows ({ev.holdout_rows:,}), seed {ev.seed}"
            + positive,
        ),
        (
            "ONNX verification",
            f"{v.rows:,} rows, largest difference {v.max_abs_diff:.2g} (tolerance {v.atol:g} + "
            f"{v.rtol:g}·|value|){mismatches}: {'passed' if v.passed else 'failed'}",
        ),
        ("ONNX sha256", Cell(meta.onnx_sha256, "code")),
        ("ONNX opset", Cell(json.dumps(prov.opset, sort_keys=True), "code")),
        ("ONNX nodes", Cell(json.dumps(meta.onnx_nodes or {}, sort_keys=True), "code")),
        (
            "code",
            Cell(
                (prov.git_commit or "unknown")
                + (" (with local changes)" if prov.git_dirty else ""),
                "code",
            ),
        ),
        ("created", f"{prov.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("spec file", prov.spec_path or "—"),
    ]
    if meta.origin is not None and meta.imported:
        o = meta.origin
        facts.append(
            (
                "imported from",
                f"{o.source or 'an object in Python'} ({o.format}"
                + (f", sha256 {o.sha256}" if o.sha256 else "")
                + f"), a {o.model_class}",
            )
        )
    facts.append(("metadata schema", str(meta.schema_version)))
    if holdout is not None:
        facts.append(
            (
                "holdout document",
                f"schema {holdout.schema_version}; {holdout.rows:,} of {holdout.holdout_rows:,} "
                f"rows; importance by {holdout.importance_scoring} on "
                f"{holdout.importance_rows:,} rows, {holdout.importance_repeats} repeats",
            )
        )
    facts += [(f"data {d.source}", Cell(f"sha256 {d.sha256}", "code")) for d in meta.data]
    return facts


def technical_document(
    sources: Sources, generated: datetime, changes: Changes | None = None
) -> TechnicalDocument:
    meta, holdout = sources.meta, sources.holdout
    prov = meta.provenance
    sentences, files, features = _data(meta)
    libraries = ", ".join(f"{k} {v}" for k, v in sorted(prov.libraries.items()) if k != "python")
    classes, matrix = meta.classes, meta.evaluation.confusion_matrix
    return TechnicalDocument(
        **vars(header(meta, generated)),
        metrics=_metrics(meta),
        metric_notes=[] if meta.quality_measured else [Note(missing_words(meta))],
        gate=_gate(meta),
        per_class=(
            per_class_table(classes, matrix, holdout.train_class_counts if holdout else None)
            if classes and matrix
            else None
        ),
        comparison=_comparison(meta, sources.previous),
        importance=_importance(meta, holdout),
        data_sentences=sentences,
        files=files,
        features=features,
        facts=_facts(meta, holdout),
        libraries=f"python {prov.python}, {libraries}",
        spec=json.dumps(prov.spec, indent=2, sort_keys=False),
        changes=changes,
    )
