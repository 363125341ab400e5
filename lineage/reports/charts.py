"""Inline SVG line charts for the dataset history (no JavaScript, no external asset).

Each chart plots one series over the runs in time order; a run where a gate failed gets a red band and
a red marker, so failures line up across charts. Every text that reaches the SVG is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 160
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 22, 22


def _fmt(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:.3g}k"
    return f"{value:.4g}"


def line_chart(title: str, values: Sequence[float | None], failed: Sequence[bool],
               labels: Sequence[str]) -> str:
    """An ``<svg>`` of ``values`` (None: no value that run), ``failed`` marking failed runs."""
    n = len(values)
    present = [v for v in values if v is not None]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    if high == low:
        low, high = low - 1 if low else 0.0, high + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / n if n else 0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    band = plot_w / n if n else plot_w
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
             f'<text x="{LEFT}" y="14" class="ct">{escape(title)}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + 4}" class="ax" text-anchor="end">{escape(_fmt(high))}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + plot_h}" class="ax" text-anchor="end">'
             f"{escape(_fmt(low))}</text>",
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="axis"/>']
    for i, bad in enumerate(failed):
        if bad:
            parts.append(f'<rect x="{x(i) - band / 2:.1f}" y="{TOP}" width="{band:.1f}" height="{plot_h}" '
                         f'class="failband"><title>{escape(labels[i])}: gate failed</title></rect>')
    segment: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if len(segment) > 1:
                parts.append(f'<polyline points="{" ".join(segment)}" class="line"/>')
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(v):.1f}")
    if len(segment) > 1:
        parts.append(f'<polyline points="{" ".join(segment)}" class="line"/>')
    for i, v in enumerate(values):
        if v is not None:
            cls = "dot fail" if failed[i] else "dot"
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" class="{cls}">'
                         f"<title>{escape(labels[i])}: {escape(_fmt(v))}</title></circle>")
    if labels:
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" class="ax">{escape(labels[0][:19])}</text>')
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" class="ax" text-anchor="end">'
                     f"{escape(labels[-1][:19])}</text>")
    parts.append("</svg>")
    return "".join(parts)
