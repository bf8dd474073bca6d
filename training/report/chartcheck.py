"""What is checked on a drawn report chart, in display coordinates after a draw.

:func:`legend_overlaps` compares each legend's window extent with every drawn datum of every
axes (lines, with the segments between their points; scatter points; bars and other patches;
images; texts such as bar labels) and names what it covers; :func:`obstacles` is that list,
which :func:`training.report.chartkit.place_legend` uses to find a clear place. :func:`cut_off`
names texts that run past the figure's edge; :func:`legend_entries` says how each legend entry
is drawn (line style, marker, hatching), for the grey-print check. Nothing here draws data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

__all__ = [
    "LegendEntry",
    "Obstacle",
    "cut_off",
    "hits",
    "legend_entries",
    "legend_overlaps",
    "obstacles",
    "words",
]


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


def words(fig: Figure) -> list[str]:
    """Every text drawn on ``fig``: titles, axis and tick labels, legend and bar labels."""
    return [t.get_text() for t in _texts(fig)]


def cut_off(fig: Figure, drawn: bool = False) -> list[str]:
    """Texts of ``fig`` that run past its edge (a label too long for the width)."""
    if not drawn:
        fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    edge = fig.bbox.padded(1)
    return [t.get_text() for t in _texts(fig) if not _inside(t.get_window_extent(renderer), edge)]


def _inside(box: Bbox, edge: Bbox) -> bool:
    return bool(edge.x0 <= box.x0 and box.x1 <= edge.x1 and edge.y0 <= box.y0 and box.y1 <= edge.y1)


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
    blocking = obstacles(fig, renderer)
    found: list[str] = []
    for legend in _legends(fig):
        box = legend.get_window_extent(renderer)
        found.extend(f"legend over {what}" for what in hits(box, blocking))
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


# -- what a legend must not cover ------------------------------------------------------------

Obstacle = tuple[str, Callable[["Bbox"], bool]]


def hits(box: Bbox, blocking: Sequence[Obstacle]) -> list[str]:
    """What of ``blocking`` the box ``box`` covers."""
    return [what for what, covered in blocking if covered(box)]


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


def obstacles(fig: Figure, renderer: RendererBase) -> list[Obstacle]:
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
