"""What every report chart shares: its size and styles, the drawing context, legend placement.

A chart is drawn on its own Agg canvas (nothing touches pyplot or the process-wide backend, so
importing this module, or drawing from a thread, changes no global state) and comes back as a
:class:`Chart`: the PNG the page embeds, and what the tests check without the figure, which is
gone by then: where its legend landed against the drawn data, texts cut off at the edge, and
how each legend entry is told apart without colour (:mod:`training.report.chartcheck`).

Sizes are for print: :data:`WIDTH_MM` by :data:`HEIGHT_MM` at :data:`DPI` fits two charts,
with their captions, on one A4 page; shown at that width, the fonts are their point size on
paper. Series differ in line style, marker or hatching as well as colour, so a grey printout
still tells them apart (:func:`series_style`, :data:`HATCHES`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from training.report.chartcheck import (
    LegendEntry,
    cut_off,
    hits,
    legend_entries,
    legend_overlaps,
    obstacles,
    words,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

__all__ = [
    "DPI",
    "GUESS",
    "HATCHES",
    "HEIGHT_MM",
    "INSIDE",
    "WIDTH_MM",
    "Chart",
    "Drawing",
    "Place",
    "data_uri",
    "drawing",
    "indistinct_in_grey",
    "paired_bars",
    "place_legend",
    "series_style",
]

WIDTH_MM = 170.0  # the A4 text width less margins: two such charts and captions fill a page
HEIGHT_MM = 105.0
DPI = 110  # enough for print at this size, and a chart stays near 60 kB
MM_PER_INCH = 25.4

# Colours differ in lightness too, and each series also has its own line style and marker.
COLOURS = ("#1f4e8c", "#d9641e", "#3a9d5d", "#7b3f9e", "#b03030", "#6b6b6b")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "//", "..", "xx", "\\\\", "++")
GUESS = "#8a8a8a"  # the "guessing" / "perfect" reference lines
EDGE = "#1a1a1a"  # bar edges: hatching needs them, and they keep light bars visible in grey

STYLE: dict[Any, Any] = {
    "font.size": 11,
    "axes.titlesize": 12.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 10,
    "legend.frameon": True,
    "legend.framealpha": 0.9,
    "legend.edgecolor": "#cccccc",
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "hatch.linewidth": 0.8,
}

# Where a legend may go inside the axes, corners first; if none is clear of the data, it goes
# under the axes (a figure legend), where it cannot cover anything.
Place = Literal[
    "upper right",
    "upper left",
    "lower right",
    "lower left",
    "center right",
    "center left",
    "upper center",
    "lower center",
    "center",
]
INSIDE: tuple[Place, ...] = get_args(Place)
OUTSIDE: Literal["outside lower center"] = "outside lower center"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def series_style(n: int) -> dict[str, Any]:
    """Colour, line style and marker of the ``n``-th series: no two alike, even in grey."""
    return {
        "color": COLOURS[n % len(COLOURS)],
        "linestyle": LINESTYLES[n % len(LINESTYLES)],
        "marker": MARKERS[n % len(MARKERS)],
    }


def paired_bars(
    ax: Axes, x: Any, n: int, values: Sequence[float], label: str, width: float = 0.4
) -> Any:
    """The ``n``-th (0 or 1) of two bar series side by side at ``x``: the first solid, the
    second lighter and hatched, so the pair reads apart in grey too."""
    return ax.bar(
        x + (n - 0.5) * width,
        values,
        width,
        color=series_style(n)["color"],
        alpha=0.9 if n == 0 else 0.42,
        edgecolor=EDGE,
        hatch=HATCHES[n],
        label=label,
    )


@dataclass(frozen=True)
class Chart:
    """A drawn chart: the PNG for the page, and what the tests check on the figure it was."""

    name: str
    title: str
    png: bytes
    overlaps: tuple[str, ...] = ()  # legend_overlaps() of the figure as saved: () is right
    legend: tuple[LegendEntry, ...] = ()
    words: tuple[str, ...] = ()  # every text drawn: titles, axis and tick labels, bar labels
    cut_off: tuple[str, ...] = ()  # texts that run past the figure's edge: () is right
    width_mm: float = WIDTH_MM
    height_mm: float = HEIGHT_MM

    @property
    def uri(self) -> str:
        return data_uri(self.png)


@dataclass
class Drawing:
    """The figure being drawn; :attr:`chart` is set when the ``with`` block ends."""

    fig: Figure
    name: str
    title: str
    height_mm: float
    chart: Chart | None = field(default=None)


@contextmanager
def drawing(name: str, title: str, height_mm: float = HEIGHT_MM) -> Iterator[Drawing]:
    """A figure :data:`WIDTH_MM` wide to draw on; on exit it is checked and saved as PNG."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = (WIDTH_MM / MM_PER_INCH, height_mm / MM_PER_INCH)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)  # the Agg canvas, for this figure only
        current = Drawing(fig, name, title, height_mm)
        yield current
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
        # savefig drew the figure at its final layout: what the reader sees is what is checked
        current.chart = Chart(
            name=name,
            title=title,
            png=buffer.getvalue(),
            overlaps=tuple(legend_overlaps(fig, drawn=True)),
            legend=tuple(legend_entries(fig)),
            words=tuple(words(fig)),
            cut_off=tuple(cut_off(fig, drawn=True)),
            width_mm=WIDTH_MM,
            height_mm=height_mm,
        )


def done(current: Drawing) -> Chart:
    """The chart of a finished :func:`drawing` block."""
    assert current.chart is not None, "the drawing block has not ended"
    return current.chart


# -- legends ------------------------------------------------------------------------------


def place_legend(ax: Axes, ncol: int = 1, order: Sequence[Place] = INSIDE) -> Legend | None:
    """The axes' legend in the first place of ``order`` clear of every drawn datum, else under
    the axes; None when nothing drawn has a label. Call it last, when all is drawn."""
    if not ax.get_legend_handles_labels()[0]:
        return None
    fig = ax.get_figure(root=True)
    assert fig is not None
    fig.draw_without_rendering()  # settles the layout, so positions are final
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    blocking = obstacles(fig, renderer)
    legend = ax.legend(loc=order[0], ncol=ncol)
    for loc in order:
        legend.set_loc(loc)
        if not hits(legend.get_window_extent(renderer), blocking):
            return legend
    handles, labels = ax.get_legend_handles_labels()
    legend.remove()
    return fig.legend(handles, labels, loc=OUTSIDE, ncol=min(len(labels), 3))


def indistinct_in_grey(chart: Chart) -> list[tuple[str, str]]:
    """Pairs of legend entries that differ only in colour (a grey printout merges them)."""
    entries = chart.legend
    return [
        (a.label, b.label)
        for i, a in enumerate(entries)
        for b in entries[i + 1 :]
        if a.grey_key == b.grey_key
    ]
