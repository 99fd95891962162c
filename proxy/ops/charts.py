"""Server-rendered SVG for the dashboard: no script, no library, readable as it arrives.

``quality_cost_chart``: one task's candidates, quality Q_r (0-10) against estimated cost
(log scale), one line per model through its round counts; a calibrated model's points are
filled on a solid line, a guessed one's hollow on a dashed line; the planner's pick is ringed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from routing.cost import format_usd

WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 16, 44
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


@dataclass(frozen=True, slots=True)
class Point:
    rounds: int
    quality: float
    cost_usd: float
    picked: bool = False


@dataclass(frozen=True, slots=True)
class ModelLine:
    model: str
    calibrated: bool
    points: tuple[Point, ...]


def quality_cost_chart(title: str, lines: Sequence[ModelLine]) -> str:
    """An ``<svg>`` element (with a ``<title>`` for screen readers) of ``lines``."""
    costs = [p.cost_usd for line in lines for p in line.points if p.cost_usd > 0]
    if not costs:
        return f'<p class="empty">No model has a quality figure for {escape(title)}.</p>'
    low, high = _decades(min(costs), max(costs))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(cost: float) -> float:
        share = (math.log10(max(cost, low)) - math.log10(low)) / (
            math.log10(high) - math.log10(low)
        )
        return LEFT + share * plot_w

    def y(quality: float) -> float:
        return TOP + (1 - quality / 10) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for quality in range(0, 11, 2):
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(quality):.1f}" '
            f'y2="{y(quality):.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y(quality) + 4:.1f}" class="tick" '
            f'text-anchor="end">{quality}</text>'
        )
    decade = low
    while decade <= high * 1.0001:
        parts.append(
            f'<line x1="{x(decade):.1f}" x2="{x(decade):.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" class="grid"/>'
            f'<text x="{x(decade):.1f}" y="{TOP + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{escape(format_usd(decade))}</text>'
        )
        decade *= 10
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" class="axis" '
        f'text-anchor="middle">estimated cost per request, USD (log)</text>'
        f'<text x="14" y="{TOP + plot_h / 2:.0f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2:.0f})">quality Q_r (0-10)</text>'
    )
    for index, line in enumerate(lines):
        color = PALETTE[index % len(PALETTE)]
        dash = "" if line.calibrated else ' stroke-dasharray="5 4"'
        coords = " ".join(f"{x(p.cost_usd):.1f},{y(p.quality):.1f}" for p in line.points)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}"{dash}/>')
        for point in line.points:
            fill = color if line.calibrated else "white"
            label = (
                f"{line.model}, {point.rounds} rounds: Q {point.quality:g}, "
                f"{format_usd(point.cost_usd)} USD"
            )
            parts.append(
                f'<circle cx="{x(point.cost_usd):.1f}" cy="{y(point.quality):.1f}" r="4" '
                f'fill="{fill}" stroke="{color}"><title>{escape(label)}</title></circle>'
            )
            if point.picked:
                parts.append(
                    f'<circle cx="{x(point.cost_usd):.1f}" cy="{y(point.quality):.1f}" r="9" '
                    f'class="picked"/>'
                )
        kind = "calibrated" if line.calibrated else "guessed"
        legend_y = TOP + 14 + 18 * index
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 10}" x2="{WIDTH - RIGHT + 30}" y1="{legend_y - 4}" '
            f'y2="{legend_y - 4}" stroke="{color}"{dash}/>'
            f'<text x="{WIDTH - RIGHT + 34}" y="{legend_y}" class="legend">'
            f"{escape(line.model)} ({kind})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _decades(low: float, high: float) -> tuple[float, float]:
    """Powers of ten around ``low`` and ``high`` (at least one decade apart)."""
    bottom = 10 ** math.floor(math.log10(low))
    top = 10 ** math.ceil(math.log10(high))
    return bottom, top if top > bottom else bottom * 10
