"""The report's HTML pieces: escaping, a figure with its caption, a note, a table.

Shared by the report's sections (training/report/render.py, training/report/changes.py).
Every text that reaches the page goes through :func:`e` (element text) or :func:`a`
(attribute values); cells given to :func:`table` are HTML already.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from training.report import charts

__all__ = ["a", "e", "figure", "note", "table"]


def e(value: Any) -> str:
    """``value`` as element text."""
    return html.escape(str(value), quote=False)


def a(value: Any) -> str:
    """``value`` as an attribute value."""
    return html.escape(str(value), quote=True)


def figure(png: bytes, title: str, caption: str) -> str:
    """A chart embedded as a ``data:`` URI, with its title and caption."""
    heading = title if title.endswith(("?", ".", "!")) else title + "."
    return (
        f'<figure><img src="{charts.data_uri(png)}" alt="{a(title)}">'
        f"<figcaption><strong>{e(heading)}</strong> {e(caption)}</figcaption></figure>"
    )


def note(text: str) -> str:
    return f'<p class="note">{e(text)}</p>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """A table: ``header`` is text, each cell of ``rows`` is HTML."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
