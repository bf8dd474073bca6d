"""Reports: two self-contained HTML documents per model version, and a PDF of each.

``report.html`` is the client's: in plain words what the model does and how sure that is,
what the data says, how well it works (charts chosen for the task and the data size) and how
it compares with the previous version; no metric names, no JSON. ``technical.html`` is the
data team's: every metric beside the baseline, quality checks, ONNX verification, parameters,
versions, fingerprints and the spec. Each links to the other by a relative name.

``kiln report NAME[:VERSION]`` and every training run write both; everything in them comes
from the model store: ``kiln.json``, ``holdout.json``, ``decision.json`` (after ``kiln
retrain``) and the previous version's metadata. ``kiln drift NAME --data FILE --report DIR``
adds a section on how FILE differs from the training data. Modules:
:mod:`~training.report.sentences` (plain words from numbers), :mod:`~training.report.charts`
(matplotlib to PNG), :mod:`~training.report.context` and :mod:`~training.report.technical`
(what each document says), :mod:`~training.report.render` (Jinja2 templates in
``templates/``), :mod:`~training.report.changes` (the drift section),
:mod:`~training.report.pdf` (headless Chromium).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.artifact import read_holdout
from kiln.store import StoredModel, list_models
from training.report.files import CLIENT_HTML, CLIENT_PDF, TECHNICAL_HTML, TECHNICAL_PDF
from training.report.pdf import ReportError, find_chromium, write_pdf
from training.report.render import Documents, render

if TYPE_CHECKING:
    from training.drift import DriftResult

__all__ = [
    "REPORT_FILE",
    "TECHNICAL_FILE",
    "Documents",
    "ReportError",
    "Written",
    "build_report",
    "find_chromium",
    "previous_model",
    "render",
    "write_pdf",
    "write_report",
]

REPORT_FILE = CLIENT_HTML
TECHNICAL_FILE = TECHNICAL_HTML


@dataclass(frozen=True)
class Written:
    """The files of one report: both HTML documents, and their PDFs when printed."""

    client: Path
    technical: Path
    client_pdf: Path | None = None
    technical_pdf: Path | None = None

    @property
    def paths(self) -> list[Path]:
        found = [self.client, self.technical, self.client_pdf, self.technical_pdf]
        return [p for p in found if p is not None]


def previous_model(stored: StoredModel) -> StoredModel | None:
    """The version this one is compared with: the production version when it is an earlier
    one (a new model is compared with the one it may replace), else the newest earlier
    candidate of the same name.

    The one place that decides what "the previous production model" is.
    """
    from kiln.production import current, production_model

    created = stored.metadata.provenance.created_at
    if current(stored.metadata.name) is not None:
        live = production_model(stored.metadata.name)
        earlier = live is not None and live.metadata.provenance.created_at < created
        if live is not None and earlier and live.tag != stored.tag:
            return live
    models, _ = list_models(stored.metadata.name)  # newest first
    for model in models:
        if (
            model.tag != stored.tag
            and model.stage.value == "candidate"
            and model.metadata.provenance.created_at < created
        ):
            return model
    return None


def build_report(
    stored: StoredModel, *, generated: datetime | None = None, drift: DriftResult | None = None
) -> Documents:
    """Both documents of ``stored``, from what the store holds; ``drift``: new data compared
    with its training data (training/drift.py), for the section on it."""
    from kiln.production import current, read_decision

    previous = previous_model(stored)
    record = current(stored.metadata.name)
    return render(
        stored.metadata,
        read_holdout(stored.path, stored.tag),
        previous.metadata if previous else None,
        decision=read_decision(stored),
        in_service=record is not None and record.version == stored.metadata.version,
        generated=generated,
        drift=drift,
    )


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_report(
    stored: StoredModel,
    directory: Path,
    drift: DriftResult | None = None,
    *,
    pdf: bool = False,
) -> Written:
    """Write ``report.html`` and ``technical.html`` into ``directory`` (creating it) and,
    with ``pdf``, print ``report.pdf`` and ``technical.pdf`` beside them (needs Chromium)."""
    documents = build_report(stored, drift=drift)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot write {directory}: {exc.strerror or exc}") from None
    client = _write(directory / CLIENT_HTML, documents.client)
    technical = _write(directory / TECHNICAL_HTML, documents.technical)
    if not pdf:
        return Written(client, technical)
    # Printed from copies that link to the other PDF, so the printed pair links to itself.
    printed: list[Path] = []
    for name, text, target in [
        (CLIENT_HTML, documents.client_for_pdf, CLIENT_PDF),
        (TECHNICAL_HTML, documents.technical_for_pdf, TECHNICAL_PDF),
    ]:
        source = _write(directory / f".{name}.print.html", text)
        try:
            printed.append(write_pdf(source, directory / target))
        finally:
            source.unlink(missing_ok=True)
    return Written(client, technical, printed[0], printed[1])
