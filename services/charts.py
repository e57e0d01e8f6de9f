"""Charts drawn on the server as SVG: pure geometry from values, no I/O.

A chart here is a few hundred to about 1,400 points, drawn once per request: SVG path strings
are small and need no JavaScript library (nothing to vendor, nothing to load before the page
shows its numbers). Hover text is the SVG `<title>` of each marker, which every browser shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

WIDTH = 720
HEIGHT = 180
SPARK_WIDTH = 120
SPARK_HEIGHT = 24

MIB = 1024 * 1024


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[float, float]]  # (epoch seconds, value)
    css: str = ""


@dataclass(frozen=True)
class Level:
    """A horizontal line: the request or the limit."""

    label: str
    value: float
    css: str


@dataclass(frozen=True)
class Marker:
    at: float
    title: str
    css: str


@dataclass
class DrawnChart:
    name: str
    title: str
    width: int
    height: int
    lines: list[dict] = field(default_factory=list)
    levels: list[dict] = field(default_factory=list)
    markers: list[dict] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)
    latest: str = ""
    # The value at the top edge: the chart's scale, said in words under it.
    top: str = ""
    empty: bool = True


def format_cpu(cores: float) -> str:
    if cores >= 1:
        return f"{cores:.2f} vCPU"
    if cores >= 0.01:
        return f"{cores:.3f} vCPU"
    return f"{cores * 1000:.1f}m vCPU"


def format_memory(value: float) -> str:
    if value >= 1024 * MIB:
        return f"{value / (1024 * MIB):.2f} GiB"
    return f"{value / MIB:.0f} MiB" if value >= 10 * MIB else f"{value / MIB:.1f} MiB"


def _path(points: Sequence[tuple[float, float]], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    if len(points) == 1:
        # One sample (a service just started): a short dash, since a lone point draws nothing.
        (t, v), = points
        return f"M{max(x(t) - 6, 0):.1f},{y(v):.1f} L{x(t):.1f},{y(v):.1f}"
    return "M" + " L".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points) if points else ""


def draw(
    *,
    name: str,
    title: str,
    start: float,
    end: float,
    lines: Sequence[Line],
    levels: Sequence[Level] = (),
    markers: Sequence[Marker] = (),
    fmt: Callable[[float], str] = format_cpu,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> DrawnChart:
    """Scale the lines, levels and markers into a `width` x `height` box (time left to right,
    zero at the bottom, the highest value or level a tenth below the top)."""
    values = [v for line in lines for _, v in line.points] + [level.value for level in levels]
    top = max(values, default=0.0) * 1.1 or 1.0
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return (t - start) / span * width

    def y(v: float) -> float:
        return height - v / top * height

    chart = DrawnChart(name=name, title=title, width=width, height=height, top=fmt(top))
    chart.lines = [{"label": line.label, "d": _path(line.points, x, y), "css": line.css} for line in lines]
    chart.empty = not any(line.points for line in lines)
    chart.levels = [
        {"label": f"{level.label} {fmt(level.value)}", "y": round(y(level.value), 1), "css": level.css}
        for level in levels
        if level.value > 0
    ]
    chart.markers = [
        {"x": round(x(marker.at), 1), "title": marker.title, "css": marker.css}
        for marker in markers
        if start <= marker.at <= end
    ]
    chart.ticks = [{"y": round(y(top * f), 1), "label": fmt(top * f)} for f in (0.25, 0.5, 0.75)]
    first = next((line for line in lines if line.points), None)
    if first is not None:
        chart.latest = fmt(first.points[-1][1])
    return chart


def sparkline(points: Sequence[tuple[float, float]], *, start: float, end: float, ceiling: float = 0.0) -> str:
    """The path of a card's small line; `ceiling` (the limit) keeps a flat line from filling it."""
    top = max([v for _, v in points] + [ceiling], default=0.0) or 1.0
    span = max(end - start, 1.0)
    return _path(
        points,
        lambda t: (t - start) / span * SPARK_WIDTH,
        lambda v: SPARK_HEIGHT - 1 - v / top * (SPARK_HEIGHT - 2),
    )
