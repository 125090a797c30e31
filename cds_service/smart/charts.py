"""Trend charts as inline SVG, drawn on the server: no JavaScript, no library, no network.

One chart per series: the values over the window as a line with a dot per result (each dot
carries a <title> with the date and the value as reported), dashed horizontal reference lines
with their labels, day ticks on the time axis, and the anticoagulant doses given as small
triangles under the axis. Colours and fonts come from the page's stylesheet (classes only:
the Content-Security-Policy allows no inline style).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

W, H = 640, 210
LEFT, RIGHT, TOP, BOTTOM = 52, 78, 24, 46


@dataclass(frozen=True)
class RefLine:
    value: float
    label: str
    kind: str = "ref"   # css class suffix: ref | alarm


def _nice_step(span: float, target: int = 4) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(v: float) -> str:
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:,.1f}".rstrip("0").rstrip(".")
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def chart(title: str, unit: str, points, start: datetime, end: datetime, *,
          lines: tuple[RefLine, ...] = (), doses=(), chart_id: str = "") -> str:
    """An <svg> element (as a string) for `points` (objects with time, value, shown)."""
    if end <= start:
        end = start + timedelta(hours=1)
    values = [p.value for p in points] + [r.value for r in lines]
    lo = min(0.0, min(values)) if values else 0.0
    hi = max(values) if values else 1.0
    if hi <= lo:
        hi = lo + 1.0
    step = _nice_step(hi - lo)
    hi = math.ceil(hi * 1.08 / step) * step
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    span = (end - start).total_seconds()

    def x(t: datetime) -> float:
        return LEFT + plot_w * min(max((t - start).total_seconds() / span, 0.0), 1.0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - lo) / (hi - lo))

    label = f"{title} trend, {len(points)} result{'s' if len(points) != 1 else ''}"
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}"'
           f' xmlns="http://www.w3.org/2000/svg" data-points="{len(points)}"'
           + (f' id="{escape(chart_id)}"' if chart_id else "") + ">",
           f"<title>{escape(label)}</title>"]
    # y grid and labels
    tick = lo
    while tick <= hi + 1e-9:
        ty = y(tick)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{ty:.1f}" x2="{LEFT + plot_w}" y2="{ty:.1f}"/>')
        out.append(f'<text class="ylab" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
        tick += step
    out.append(f'<text class="unit" x="{LEFT}" y="{TOP - 10}" text-anchor="start">{escape(unit)}</text>')
    # x ticks: one per day (every 2nd day beyond 8 days)
    days = span / 86400
    every = 1 if days <= 8 else 2
    day = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    n = 0
    while day <= end:
        if n % every == 0:
            tx = x(day)
            out.append(f'<line class="xtick" x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{TOP + plot_h}"/>')
            out.append(f'<text class="xlab" x="{tx:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">'
                       f'{day.strftime("%d %b")}</text>')
        day += timedelta(days=1)
        n += 1
    out.append(f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>')
    # reference lines
    for ref in lines:
        ry = y(ref.value)
        out.append(f'<line class="{ref.kind}" x1="{LEFT}" y1="{ry:.1f}" x2="{LEFT + plot_w}" y2="{ry:.1f}"/>')
        out.append(f'<text class="reflab {ref.kind}lab" x="{LEFT + plot_w + 4}" y="{ry + 4:.1f}">'
                   f'{escape(ref.label)}</text>')
    # the series
    if len(points) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(p.time):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
        out.append(f'<path class="series" d="{path}"/>')
    for p in points:
        tip = f"{p.time.strftime('%d %b %H:%M')} UTC: {p.shown}"
        cls = "pt bound" if getattr(p, "comparator", None) else "pt"
        out.append(f'<circle class="{cls}" cx="{x(p.time):.1f}" cy="{y(p.value):.1f}" r="4">'
                   f"<title>{escape(tip)}</title></circle>")
    if points:   # the latest value, written next to its dot
        last = points[-1]
        out.append(f'<text class="lastlab" x="{min(x(last.time) + 7, LEFT + plot_w - 2):.1f}" '
                   f'y="{y(last.value) - 7:.1f}" text-anchor="end">{escape(_fmt(last.value))}</text>')
    else:
        out.append(f'<text class="empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
                   f'text-anchor="middle">No results in this period</text>')
    # doses given
    base = TOP + plot_h + 22
    for d in doses:
        dx = x(d.time)
        out.append(f'<path class="dose" d="M{dx:.1f},{base - 6} l-5,9 h10 z"><title>'
                   f'{escape(d.time.strftime("%d %b %H:%M"))} UTC: {escape(d.text)} given</title></path>')
    if doses:
        out.append(f'<text class="doselab" x="{LEFT + plot_w + 4}" y="{base + 2}">doses</text>')
    out.append("</svg>")
    return "".join(out)
