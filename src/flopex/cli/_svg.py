"""Small line charts as SVG, for plots written next to results (no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

__all__ = ["line_chart"]

_COLOURS = ("#2166ac", "#b2182b", "#1b7837", "#762a83", "#e08214", "#4d4d4d", "#35978f", "#c51b7d")


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]], title: str, xlabel: str, ylabel: str
) -> str:
    """One polyline per (name, points) series, with axes, their ranges and a legend."""
    width, height, left, right, top, bottom = 720, 400, 70, 170, 40, 50
    xs = [x for _, pts in series for x, _ in pts] or [0.0, 1.0]
    ys = [y for _, pts in series for _, y in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > min(0.0, min(ys)) else 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * plot_w

    def sy(v: float) -> float:
        return top + plot_h - (v - y0) / (y1 - y0) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left + plot_w / 2}" y="24" font-size="14" font-weight="bold" text-anchor="middle">'
        f"{escape(title)}</text>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 14}" font-size="12" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="16" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + plot_h / 2})">{escape(ylabel)}</text>',
        f'<text x="{left}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">{x0:,.3g}</text>',
        f'<text x="{left + plot_w}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">{x1:,.3g}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" font-size="10" text-anchor="end">{y0:,.3g}</text>',
        f'<text x="{left - 6}" y="{top + 4}" font-size="10" text-anchor="end">{y1:,.3g}</text>',
    ]  # fmt: skip
    for i, (name, pts) in enumerate(series):
        colour = _COLOURS[i % len(_COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        ly = top + 14 + 16 * i
        parts.append(f'<line x1="{width - right + 10}" y1="{ly - 4}" x2="{width - right + 28}" y2="{ly - 4}" '
                     f'stroke="{colour}" stroke-width="3"/>')  # fmt: skip
        parts.append(f'<text x="{width - right + 32}" y="{ly}" font-size="10">{escape(name[:26])}</text>')
    parts.append("</svg>")
    return "".join(parts)
