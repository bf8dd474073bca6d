"""What the documents' templates are given: sentences, notes, figures, tables and their cells.

Plain frozen records of text, never HTML: the templates (training/report/templates/) escape
every value, so a class called ``<b>`` or a spec with ``&`` in it prints as written. Each
record has a ``kind`` the template's ``block`` macro dispatches on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from training.report.chartkit import Chart

__all__ = [
    "Block",
    "Cell",
    "Figure",
    "Heading",
    "Note",
    "Sentence",
    "Table",
    "figure",
]


@dataclass(frozen=True)
class Sentence:
    """A sentence a test can find by its ``key`` (``data-key`` on the page)."""

    key: str
    text: str
    kind: Literal["sentence"] = "sentence"


@dataclass(frozen=True)
class Note:
    """A side remark, in grey italics: why something is not shown, how it is measured."""

    text: str
    kind: Literal["note"] = "note"


@dataclass(frozen=True)
class Heading:
    text: str
    kind: Literal["heading"] = "heading"


@dataclass(frozen=True)
class Figure:
    """A chart as a ``data:`` URI, its title (the image's alt text) and caption, and what
    was checked on it when it was drawn (chartkit.Chart): both empty when it is right."""

    key: str
    uri: str
    title: str
    caption: str
    wide: bool = False
    overlaps: tuple[str, ...] = ()  # what its legend covers
    cut_off: tuple[str, ...] = ()  # texts past its edge
    kind: Literal["figure"] = "figure"

    @property
    def heading(self) -> str:
        return self.title if self.title.endswith(("?", ".", "!")) else self.title + "."


@dataclass(frozen=True)
class Cell:
    """A table cell shown other than as plain text: ``code``, ``strong``, ``key`` (the key
    metric, bold) or ``bar`` (text with a bar of ``share`` of its width)."""

    text: str
    style: Literal["code", "strong", "key", "bar"]
    share: float = 0.0

    @property
    def share_percent(self) -> float:
        return max(0.0, min(self.share, 1.0)) * 100


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str | Cell]]
    cls: str = ""
    kind: Literal["table"] = "table"


Block = Sentence | Note | Heading | Figure | Table


def figure(key: str, chart: Chart, title: str, caption: str, *, wide: bool = False) -> Figure:
    """A :class:`Figure` of a drawn chart, its checks kept for the tests."""
    return Figure(key, chart.uri, title, caption, wide, chart.overlaps, chart.cut_off)
