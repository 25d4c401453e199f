"""Server-rendered SVG plots: time series, step series, histograms and horizontal bars.

Rendered on the server so that pages need no charting library (nothing fetched, nothing to
pin) and the SVG swaps with the rest of ``<main>`` on a live update. Every label is escaped;
every plot carries ``class="plot"`` and a ``data-plot`` name for tests and styling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

W, H = 640, 190  # viewBox; the SVG scales to its container
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 10, 24
PALETTE = ("#2f7cf6", "#14b8a6", "#f59e0b", "#d64545", "#7a5af5", "#64748b")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y); x in epoch seconds for time axes
    color: str = ""


def _nice(top: float) -> float:
    """A round upper bound for an axis (1, 2, 2.5, 5 x 10^k)."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10)
                if top <= step * magnitude * (1 + 1e-9))


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.3g}"


def _clock(seconds: float, span: float) -> str:
    at = datetime.fromtimestamp(seconds, UTC)
    return at.strftime("%H:%M:%S" if span < 600 else "%m-%d %H:%M" if span > 86400 * 2
                       else "%H:%M")


def _frame(name: str, label: str, y_top: float, y_unit: str) -> list[str]:
    parts = [f'<svg class="plot" data-plot="{escape(name)}" viewBox="0 0 {W} {H}" '
             f'preserveAspectRatio="none" role="img" aria-label="{escape(label)}">']
    for i in range(3):
        value = y_top * i / 2
        y = H - BOTTOM - (H - TOP - BOTTOM) * i / 2
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="tick" x="{LEFT - 5}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(_fmt(value))}{escape(y_unit)}</text>')
    return parts


def _legend(series: Sequence[Series]) -> str:
    items = "".join(f'<span><i style="background:{s.color or PALETTE[i % len(PALETTE)]}"></i>'
                    f'{escape(s.name)}</span>' for i, s in enumerate(series))
    return f'<div class="legend">{items}</div>'


def line_chart(name: str, series: Sequence[Series], *, label: str = "", y_unit: str = "",
               time_axis: bool = True, step: bool = False, empty: str = "no data yet"
               ) -> Markup:
    """Lines (or steps, e.g. a pool size) over a shared x axis; y from 0."""
    xs = [x for s in series for x, _ in s.points]
    if not xs:
        return Markup('<div class="empty" data-plot="{}">{}</div>').format(name, empty)
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0
    y_top = _nice(max((y for s in series for _, y in s.points), default=1.0))
    sx = (W - LEFT - RIGHT) / span
    sy = (H - TOP - BOTTOM) / y_top
    parts = _frame(name, label or name, y_top, y_unit)
    for i in range(4):
        x = x0 + span * i / 3
        px = LEFT + (x - x0) * sx
        text = _clock(x, span) if time_axis else _fmt(round(x, 2))
        parts.append(f'<text class="tick" x="{px:.1f}" y="{H - 6}" '
                     f'text-anchor="{("start", "middle", "middle", "end")[i]}">'
                     f'{escape(text)}</text>')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        path: list[str] = []
        previous_y = None
        for x, y in sorted(s.points):
            px, py = LEFT + (x - x0) * sx, H - BOTTOM - y * sy
            if step and previous_y is not None:
                path.append(f"L{px:.1f},{previous_y:.1f}")
            path.append(f"{'M' if not path else 'L'}{px:.1f},{py:.1f}")
            previous_y = py
        if step and previous_y is not None:
            path.append(f"L{W - RIGHT},{previous_y:.1f}")
        parts.append(f'<path class="series" d="{" ".join(path)}" fill="none" stroke="{color}" '
                     f'stroke-width="2"><title>{escape(s.name)}</title></path>')
        if len(s.points) <= 60:
            parts.extend(f'<circle cx="{LEFT + (x - x0) * sx:.1f}" cy="{H - BOTTOM - y * sy:.1f}"'
                         f' r="2.5" fill="{color}"><title>{escape(s.name)}: {escape(_fmt(y))}'
                         f'</title></circle>' for x, y in s.points)
    parts.append("</svg>")
    return Markup("".join(parts) + _legend(series))


def histogram(name: str, counts: Sequence[int], low: float, high: float, *, label: str = "",
              underflow: int = 0, overflow: int = 0, color: str = PALETTE[0]) -> Markup:
    """Bars of equal width from ``low`` to ``high``; under/overflow counted in the caption."""
    n = len(counts)
    if not n:
        return Markup('<div class="empty" data-plot="{}">no bins</div>').format(name)
    y_top = _nice(max(max(counts), 1))
    width = (W - LEFT - RIGHT) / n
    sy = (H - TOP - BOTTOM) / y_top
    parts = _frame(name, label or name, y_top, "")
    for i, count in enumerate(counts):
        edge = low + (high - low) * i / n
        height = count * sy
        parts.append(f'<rect class="bin" x="{LEFT + i * width + 0.5:.1f}" '
                     f'y="{H - BOTTOM - height:.1f}" width="{max(width - 1, 0.5):.1f}" '
                     f'height="{height:.1f}" fill="{color}"><title>[{escape(_fmt(edge))}, '
                     f'{escape(_fmt(edge + (high - low) / n))}): {count}</title></rect>')
    for i, align in ((0, "start"), (n // 2, "middle"), (n, "end")):
        parts.append(f'<text class="tick" x="{LEFT + i * width:.1f}" y="{H - 6}" '
                     f'text-anchor="{align}">{escape(_fmt(low + (high - low) * i / n))}</text>')
    parts.append("</svg>")
    caption = (f'<div class="legend"><span>{sum(counts):,} in range</span>'
               f'<span>underflow {underflow:,}</span><span>overflow {overflow:,}</span></div>')
    return Markup("".join(parts) + caption)


def hbars(name: str, items: Sequence[tuple[str, float, str | None]], *, unit: str = "",
          color: str = PALETTE[1]) -> Markup:
    """One horizontal bar per (label, value, link or None), largest first as given."""
    if not items:
        return Markup('<div class="empty" data-plot="{}">nothing in this period</div>').format(
            name)
    top = max(v for _, v, _ in items) or 1.0
    rows = []
    for label, value, href in items:
        text = (Markup('<a href="{}">{}</a>').format(href, label) if href else escape(label))
        rows.append(Markup(
            '<div class="hbar"><span class="label">{}</span><span class="track">'
            '<span style="width:{:.1f}%;background:{}"></span></span>'
            '<span class="value">{}{}</span></div>').format(
                text, value / top * 100, color, _fmt(round(value, 2)), unit))
    return Markup('<div class="plot hbars" data-plot="{}">{}</div>').format(
        name, Markup("").join(rows))
