"""Client reports: one self-contained HTML page per model version, and a PDF of it.

``kiln report NAME[:VERSION]`` and every training run write ``report.html``; everything in it
comes from the model store: ``kiln.json``, ``holdout.json`` and the previous version's
metadata. ``kiln drift NAME --data FILE --report DIR`` adds a section on how FILE differs
from the training data. Modules: :mod:`~training.report.sentences` (plain words from
numbers), :mod:`~training.report.charts` (matplotlib to PNG), :mod:`~training.report.render`
(HTML), :mod:`~training.report.markup` (its pieces), :mod:`~training.report.changes` (the
drift section), :mod:`~training.report.pdf` (headless Chromium).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.artifact import read_holdout
from kiln.store import StoredModel, list_models
from training.report.pdf import ReportError, find_chromium, write_pdf
from training.report.render import render_report

if TYPE_CHECKING:
    from training.drift import DriftResult

__all__ = [
    "REPORT_FILE",
    "ReportError",
    "build_report",
    "find_chromium",
    "previous_model",
    "render_report",
    "write_pdf",
    "write_report",
]

REPORT_FILE = "report.html"


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
) -> str:
    """The HTML report of ``stored``, from what the store holds; ``drift``: new data
    compared with its training data (training/drift.py), for the section on it."""
    previous = previous_model(stored)
    return render_report(
        stored.metadata,
        read_holdout(stored.path, stored.tag),
        previous.metadata if previous else None,
        generated=generated,
        drift=drift,
    )


def write_report(stored: StoredModel, directory: Path, drift: DriftResult | None = None) -> Path:
    """Write ``directory/report.html`` (creating ``directory``); return its path."""
    text = build_report(stored, drift=drift)
    path = directory / REPORT_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
