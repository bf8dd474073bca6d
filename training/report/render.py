"""Both documents as self-contained HTML pages: Jinja2 templates, autoescaped, CSS inlined.

The templates (training/report/templates/, shipped as package data) receive records of plain
text (training/report/blocks.py) built by :mod:`~training.report.context` (the client's
document) and :mod:`~training.report.technical` (the data team's), and escape every value;
charts arrive as ``data:`` URIs, so a page needs nothing from outside and runs no script.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

from training.report.context import Sources, client_document
from training.report.files import CLIENT_PDF, TECHNICAL_PDF
from training.report.technical import technical_document

if TYPE_CHECKING:
    from jinja2 import Environment

    from kiln.artifact import Holdout, ModelMetadata
    from kiln.production import Decision
    from training.drift import DriftResult

__all__ = ["CLIENT_TEMPLATE", "TECHNICAL_TEMPLATE", "Documents", "environment", "render"]

CLIENT_TEMPLATE = "client.html.j2"
TECHNICAL_TEMPLATE = "technical.html.j2"


@dataclass(frozen=True)
class Documents:
    """The two pages of one report, the client's and the technical one, each twice: linking
    to the other's ``.html`` (to open on disk) and to its ``.pdf`` (to print)."""

    client: str
    technical: str
    client_for_pdf: str
    technical_for_pdf: str


@cache
def environment() -> Environment:
    """The templates' environment, made on first use (nothing happens at import time).

    Autoescape is on for every template, whatever its name; undefined names are errors, so a
    template that asks for a field the context lacks fails its test instead of printing "".
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("training.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(
    meta: ModelMetadata,
    holdout: Holdout | None,
    previous: ModelMetadata | None = None,
    *,
    decision: Decision | None = None,
    in_service: bool | None = None,
    generated: datetime | None = None,
    drift: DriftResult | None = None,
) -> Documents:
    """Both documents of ``meta``'s version (``in_service``: whether the production record
    serves it now; ``decision``: what ``kiln retrain`` decided about it); with ``drift``
    (``kiln drift --report``) each has the section "Has the data changed since training?"
    (words and charts for the client, drift scores for the data team)."""
    generated = generated or datetime.now(UTC)
    sources = Sources(meta, holdout, previous, decision, drift, in_service)
    changes = None
    if drift is not None:
        from training.report.changes import drift_changes

        changes = drift_changes(drift)
    client = client_document(sources, generated, changes)
    technical = technical_document(sources, generated, changes)
    env = environment()
    client_page, technical_page = (
        env.get_template(CLIENT_TEMPLATE),
        env.get_template(TECHNICAL_TEMPLATE),
    )
    return Documents(
        client=client_page.render(doc=client),
        technical=technical_page.render(doc=technical),
        client_for_pdf=client_page.render(doc=replace(client, technical_href=TECHNICAL_PDF)),
        technical_for_pdf=technical_page.render(doc=replace(technical, client_href=CLIENT_PDF)),
    )
