"""Line charts as inline SVG, written in Python: no script, no library, no network.

A 10,000-step run logs up to 10,000 points per curve; drawn as they are, a handful of curves
would make the report megabytes of path data for a chart a few hundred pixels wide. Each curve
is cut to at most ``max_points`` points by :func:`downsample` first: the steps are split into
``max_points / 2`` equal buckets and each bucket keeps its lowest and its highest point (in
step order), so loss spikes and the band the curve moves in survive, which plain striding
(every n-th point) loses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from lmforge.reporting.html import esc, fmt

Point = tuple[float, float]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#7f7f7f", "#bcbd22")
"""Series colours (matplotlib's tab10, so the report's curves match the runs' PNGs)."""

WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 30, 40
MARKERS_UP_TO = 60
"""Series with at most this many points get markers whose tooltip gives the exact value
(evaluation curves: a few points each, worth reading precisely)."""


def downsample(points: Sequence[Point], max_points: int) -> list[Point]:
    """At most ``max_points`` of ``points`` (sorted by x), keeping each bucket's extremes.

    Args:
        points: (step, value) pairs in step order; non-finite values are dropped.
        max_points: The most points kept (>= 4); the first and last points always stay.
    """
    finite = [(x, y) for x, y in points if math.isfinite(y) and math.isfinite(x)]
    if len(finite) <= max_points:
        return finite
    buckets = max(1, (max_points - 2) // 2)
    inner = finite[1:-1]
    size = len(inner) / buckets
    kept: list[Point] = [finite[0]]
    for b in range(buckets):
        chunk = inner[int(b * size):int((b + 1) * size)]
        if not chunk:
            continue
        low = min(range(len(chunk)), key=lambda i: chunk[i][1])
        high = max(range(len(chunk)), key=lambda i: chunk[i][1])
        kept.extend(chunk[i] for i in sorted({low, high}))
    kept.append(finite[-1])
    return kept


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) from at or below ``low`` to at or above
    ``high``."""
    if high <= low:  # a flat curve: a band around it
        pad = abs(low) * 0.05 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    # The first tick at or below low, the last at or above high: the axis ends on a tick.
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def line_chart(title: str, series: Mapping[str, Sequence[Point]], x_label: str = "step",
               max_points: int = 600) -> str:
    """An SVG chart of one or more curves sharing axes, with a legend.

    Args:
        title: The chart's title.
        series: Curve name -> (x, y) points in x order.
        x_label: The x axis's name.
        max_points: Each curve is downsampled to at most this many points.

    Returns:
        The ``<svg>`` element ("" when no curve has a finite point).
    """
    curves = {name: downsample(points, max_points) for name, points in series.items()}
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        return ""
    xs = [x for points in curves.values() for x, _ in points]
    ys = [y for points in curves.values() for _, y in points]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(ys), max(ys))
    x0, x1 = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs))
    y0, y1 = min(y_ticks[0], min(ys)), max(y_ticks[-1], max(ys))
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    # The legend sits under the x axis, one line per curve: inside the plot it would hide
    # the start of falling curves.
    total_h = HEIGHT + 16 * len(curves)
    parts = [f"<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {total_h}\" width=\"{WIDTH}\" "
             f"height=\"{total_h}\" role=\"img\" aria-label=\"{esc(title)}\" "
             "xmlns=\"http://www.w3.org/2000/svg\">",
             f"<text x=\"{LEFT}\" y=\"18\" class=\"title\">{esc(title)}</text>"]
    for y in y_ticks:
        parts.append(f"<line x1=\"{LEFT}\" x2=\"{WIDTH - RIGHT}\" y1=\"{py(y):.1f}\" "
                     f"y2=\"{py(y):.1f}\" class=\"grid\"/><text x=\"{LEFT - 6}\" "
                     f"y=\"{py(y) + 4:.1f}\" class=\"tick\" text-anchor=\"end\">"
                     f"{esc(fmt(y))}</text>")
    for x in x_ticks:
        parts.append(f"<text x=\"{px(x):.1f}\" y=\"{TOP + plot_h + 16}\" class=\"tick\" "
                     f"text-anchor=\"middle\">{esc(fmt(x))}</text>")
    parts.append(f"<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" "
                 "class=\"frame\"/>")
    parts.append(f"<text x=\"{LEFT + plot_w / 2:.0f}\" y=\"{HEIGHT - 6}\" class=\"axis\" "
                 f"text-anchor=\"middle\">{esc(x_label)}</text>")
    legend_x = LEFT + 8
    for i, (name, points) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f"<polyline points=\"{coords}\" stroke=\"{color}\" class=\"curve\" "
                     f"data-series=\"{esc(name)}\"><title>{esc(name)}</title></polyline>")
        if len(points) <= MARKERS_UP_TO:
            parts.extend(f"<circle cx=\"{px(x):.1f}\" cy=\"{py(y):.1f}\" r=\"2.5\" "
                         f"fill=\"{color}\"><title>{esc(name)} @ {esc(fmt(x))}: "
                         f"{esc(fmt(y))}</title></circle>" for x, y in points)
        label_y = HEIGHT + 10 + 16 * i
        parts.append(f"<rect x=\"{legend_x}\" y=\"{label_y - 5}\" width=\"10\" height=\"3\" "
                     f"fill=\"{color}\"/><text x=\"{legend_x + 14}\" y=\"{label_y}\" "
                     f"class=\"legend\">{esc(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)
