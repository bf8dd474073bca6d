"""What every report chart shares: its size and styles, the drawing context, and legend checks.

A chart is drawn on its own Agg canvas (nothing touches pyplot or the process-wide backend, so
importing this module, or drawing from a thread, changes no global state) and comes back as a
:class:`Chart`: the PNG the page embeds, and what the tests check without the figure, which is
gone by then: where its legend landed against the drawn data (:func:`legend_overlaps`) and
how each legend entry is told apart without colour (:class:`LegendEntry`).

Sizes are for print: :data:`WIDTH_MM` by :data:`HEIGHT_MM` at :data:`DPI` fits two charts,
with their captions, on one A4 page; shown at that width, the fonts are their point size on
paper. Series differ in line style, marker or hatching as well as colour, so a grey printout
still tells them apart (:func:`series_style`, :data:`HATCHES`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

__all__ = [
    "DPI",
    "GUESS",
    "HATCHES",
    "HEIGHT_MM",
    "INSIDE",
    "WIDTH_MM",
    "Chart",
    "Drawing",
    "LegendEntry",
    "Place",
    "cut_off",
    "data_uri",
    "drawing",
    "indistinct_in_grey",
    "legend_overlaps",
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
INSIDE: tuple[Place, ...] = (
    "upper right",
    "upper left",
    "lower right",
    "lower left",
    "center right",
    "center left",
    "upper center",
    "lower center",
    "center",
)
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


@dataclass(frozen=True)
class LegendEntry:
    """One legend entry and what tells it apart in grey (colour is kept for reference)."""

    label: str
    kind: str  # "line", "patch" or "points"
    linestyle: str = ""
    marker: str = ""
    hatch: str = ""
    colour: str = ""

    @property
    def grey_key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.linestyle, self.marker, self.hatch)


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
            words=tuple(text.get_text() for text in _texts(fig)),
            cut_off=tuple(cut_off(fig, drawn=True)),
            width_mm=WIDTH_MM,
            height_mm=height_mm,
        )


def _texts(fig: Figure) -> list[Text]:
    from matplotlib.text import Text

    found = fig.findobj(lambda a: isinstance(a, Text) and a.get_visible())
    unseen = _unseen_ticks(fig)
    return [
        t for t in found if isinstance(t, Text) and t.get_text().strip() and id(t) not in unseen
    ]


def _unseen_ticks(fig: Figure) -> set[int]:
    """Tick labels outside their axis' view: matplotlib keeps but does not draw them."""
    unseen: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - slack <= tick.get_loc() <= high + slack:
                    unseen.update((id(tick.label1), id(tick.label2)))
    return unseen


def cut_off(fig: Figure, drawn: bool = False) -> list[str]:
    """Texts of ``fig`` that run past its edge (a label too long for the width)."""
    if not drawn:
        fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    edge = fig.bbox.padded(1)
    return [t.get_text() for t in _texts(fig) if not _inside(t.get_window_extent(renderer), edge)]


def _inside(box: Bbox, edge: Bbox) -> bool:
    return bool(edge.x0 <= box.x0 and box.x1 <= edge.x1 and edge.y0 <= box.y0 and box.y1 <= edge.y1)


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
    obstacles = _obstacles(fig, renderer)
    legend = ax.legend(loc=order[0], ncol=ncol)
    for loc in order:
        legend.set_loc(loc)
        if not _hits(legend.get_window_extent(renderer), obstacles):
            return legend
    handles, labels = ax.get_legend_handles_labels()
    legend.remove()
    return fig.legend(handles, labels, loc=OUTSIDE, ncol=min(len(labels), 3))


def _legends(fig: Figure) -> list[Legend]:
    found = [ax.get_legend() for ax in fig.axes]
    return [leg for leg in [*found, *fig.legends] if leg is not None]


def legend_overlaps(fig: Figure, drawn: bool = False) -> list[str]:
    """What each legend of ``fig`` covers, in display coordinates after a draw: lines (their
    points and the segments between, widened by line width and marker size), scatter points,
    bars and other patches, images, and texts such as bar labels; or the figure's edge.
    ``drawn``: the figure was just drawn at its final size (saved), so no draw is needed."""
    if not drawn:
        fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    obstacles = _obstacles(fig, renderer)
    found: list[str] = []
    for legend in _legends(fig):
        box = legend.get_window_extent(renderer)
        found.extend(f"legend over {what}" for what in _hits(box, obstacles))
        if not _inside(box, fig.bbox.padded(1)):
            found.append("legend cut off by the figure's edge")
    return found


def legend_entries(fig: Figure) -> list[LegendEntry]:
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    entries: list[LegendEntry] = []
    for legend in _legends(fig):
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=False):
            label = text.get_text()
            if isinstance(handle, Line2D):
                marker = handle.get_marker()
                entries.append(
                    LegendEntry(
                        label,
                        "line",
                        linestyle=str(handle.get_linestyle()),
                        marker="" if marker in (None, "None", "", " ") else str(marker),
                        colour=to_hex(handle.get_color()),
                    )
                )
            elif isinstance(handle, Patch):
                entries.append(
                    LegendEntry(
                        label,
                        "patch",
                        hatch=str(handle.get_hatch() or ""),
                        colour=to_hex(handle.get_facecolor()),
                    )
                )
            else:
                entries.append(LegendEntry(label, "points"))
    return entries


def indistinct_in_grey(chart: Chart) -> list[tuple[str, str]]:
    """Pairs of legend entries that differ only in colour (a grey printout merges them)."""
    entries = chart.legend
    return [
        (a.label, b.label)
        for i, a in enumerate(entries)
        for b in entries[i + 1 :]
        if a.grey_key == b.grey_key
    ]


# -- what a legend must not cover ---------------------------------------------------------

Obstacle = tuple[str, Callable[["Bbox"], bool]]


def _hits(box: Bbox, obstacles: Sequence[Obstacle]) -> list[str]:
    return [what for what, covered in obstacles if covered(box)]


def _name(artist: Any, kind: str, n: int) -> str:
    label = str(artist.get_label() or "")
    return f"{kind} {label!r}" if label and not label.startswith("_") else f"{kind} {n}"


def _clipped(artist: Any, box: Bbox) -> Bbox | None:
    """The part of ``box`` where ``artist`` can be seen (inside its clip box, if clipped)."""
    from matplotlib.transforms import Bbox

    clip = artist.get_clip_box() if artist.get_clip_on() else None
    return box if clip is None else Bbox.intersection(box, clip)


def _points_in(points: np.ndarray, box: Bbox, pad: np.ndarray | float = 0.0) -> bool:
    if len(points) == 0:
        return False
    x, y = points[:, 0], points[:, 1]
    inside = (x >= box.x0 - pad) & (x <= box.x1 + pad) & (y >= box.y0 - pad) & (y <= box.y1 + pad)
    return bool(np.any(inside & np.isfinite(x) & np.isfinite(y)))


def _line_obstacle(line: Any, px: float) -> Callable[[Bbox], bool] | None:
    has_line = line.get_linestyle() not in ("None", "", " ") and line.get_linewidth() > 0
    marker = line.get_marker()
    has_marker = marker not in (None, "None", "", " ")
    if not (has_line or has_marker) or len(line.get_xydata()) == 0:
        return None
    path = line.get_transform().transform_path(line.get_path())
    pad = (line.get_linewidth() / 2 if has_line else 0) * px
    pad += (line.get_markersize() / 2 if has_marker else 0) * px

    def covered(box: Bbox) -> bool:
        seen = _clipped(line, box.padded(pad))
        if seen is None:
            return False
        return _points_in(path.vertices, seen) or (
            has_line and bool(path.intersects_bbox(seen, filled=False))
        )

    return covered


def _collection_obstacle(coll: Any, px: float) -> Callable[[Bbox], bool] | None:
    from matplotlib.collections import LineCollection, PathCollection

    offsets = np.asarray(coll.get_offsets())
    if isinstance(coll, PathCollection) and len(offsets):  # scatter: one marker per offset
        points = coll.get_offset_transform().transform(offsets)
        radius = np.sqrt(np.asarray(coll.get_sizes(), dtype=float)) / 2 * px
        pad = radius if radius.size in (1, len(points)) else float(radius.max(initial=0))

        def scattered(box: Bbox) -> bool:
            seen = _clipped(coll, box)
            return seen is not None and _points_in(points, seen, pad)

        return scattered
    transform = coll.get_transform()
    paths = [transform.transform_path(p) for p in coll.get_paths()]
    filled = not isinstance(coll, LineCollection) and len(coll.get_facecolor()) > 0
    if not paths:
        return None

    def drawn(box: Bbox) -> bool:
        seen = _clipped(coll, box)
        return seen is not None and any(p.intersects_bbox(seen, filled=filled) for p in paths)

    return drawn


def _extent_obstacle(artist: Any, renderer: RendererBase) -> Callable[[Bbox], bool] | None:
    from matplotlib.transforms import Bbox

    extent = artist.get_window_extent(renderer)
    if extent.width * extent.height < 1:  # a zero-height bar shows nothing to cover
        return None

    def covered(box: Bbox) -> bool:
        seen = _clipped(artist, box)
        both = None if seen is None else Bbox.intersection(seen, extent)
        return both is not None and both.width * both.height >= 1

    return covered


def _obstacles(fig: Figure, renderer: RendererBase) -> list[Obstacle]:
    """Each visible datum of every axes, with a test of whether a box covers it."""
    px = fig.dpi / 72  # display pixels per point
    found: list[Obstacle] = []
    for ax in fig.axes:
        where = f" in {ax.get_title()!r}" if ax.get_title() else ""
        kinds: list[tuple[str, Sequence[Any], Callable[[Any], Any]]] = [
            ("line", ax.lines, lambda a: _line_obstacle(a, px)),
            ("points", ax.collections, lambda a: _collection_obstacle(a, px)),
            ("bar", ax.patches, lambda a: _extent_obstacle(a, renderer)),
            ("image", ax.images, lambda a: _extent_obstacle(a, renderer)),
        ]
        for kind, artists, obstacle in kinds:
            for n, artist in enumerate(artists):
                test = obstacle(artist) if artist.get_visible() else None
                if test is not None:
                    found.append((_name(artist, kind, n) + where, test))
        for text in ax.texts:
            test = _extent_obstacle(text, renderer) if text.get_visible() else None
            if test is not None and text.get_text().strip():
                found.append((f"text {text.get_text()!r}{where}", test))
    return found
