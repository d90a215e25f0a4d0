"""Inline SVG charts for the HTML report: points with 95% CI bars, a log or linear x axis, and
the value, interval and sample size of every point as a hover tooltip.

Why our own few hundred lines instead of matplotlib PNGs: the report is one self-contained HTML
file that must be readable offline and interactive where it helps. An SVG ``<title>`` inside a
point is a native browser tooltip (no script, no network), the chart scales with the page, and
every point carries ``data-*`` attributes a browser test can count. Colours come from the
matplotlib names the PNG figures use (``report/figures.py``, ``report/scaling.py``), so a series
has one colour wherever it is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

from matplotlib.colors import to_hex

PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:gray", "tab:olive", "tab:cyan")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    lo: float | None = None
    hi: float | None = None
    n: int | None = None
    note: str = ""  # extra hover text (the model spec, the metric)


@dataclass
class Series:
    name: str
    points: list[Point]
    colour: str | None = None  # any matplotlib colour name; None = next in PALETTE
    dashed: bool = False
    width: float = 1.6
    opacity: float = 1.0
    line: bool = True  # join the points (sorted by x)


@dataclass
class Chart:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlog: bool = True
    xcategories: list[str] | None = None  # categorical x: Point.x is an index into this list
    zero_line: bool = False
    note: str = ""  # a caption line under the chart (caveats of its axis)

    def n_points(self) -> int:
        return sum(len(s.points) for s in self.series)


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if abs(v) >= 1e5 or 0 < abs(v) < 0.01:  # a KL of 3e-4 must not read as 0.000
        return f"{v:.3g}"
    return f"{v:.{digits}f}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) < 2:  # a narrow range (a 3-rung ladder): add 2x and 5x ticks
        ticks = sorted(t * m for t in ticks for m in (1, 2, 5))
        inside = [t for t in ticks if lo <= t <= hi]
    return inside or [lo]


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4:
        exp = math.floor(math.log10(a))
        mant = v / 10 ** exp
        return f"1e{exp}" if abs(mant - 1) < 1e-9 else f"{mant:g}e{exp}"
    return f"{v:g}"


def render(chart: Chart, *, width: int = 560, height: int = 360, chart_id: str = "") -> str:
    """The chart as one ``<svg>`` element (no external references)."""
    ml, mr, mt, mb = 62, 14, 30, 46
    legend_h = 16 * len(chart.series)
    height += legend_h
    pw, ph = width - ml - mr, height - mt - mb - legend_h
    pts = [p for s in chart.series for p in s.points if math.isfinite(p.y)]
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(chart_id)}" '
            f'data-points="{len(pts)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{escape(chart.title)}">'),
           f'<text x="{width / 2}" y="18" text-anchor="middle" class="ct">{escape(chart.title)}</text>']
    if not pts:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">no data</text></svg>')
        return "".join(out)
    xs = [p.x for p in pts]
    ys = [v for p in pts for v in (p.y, p.lo, p.hi) if v is not None and math.isfinite(v)]
    if chart.zero_line:
        ys.append(0.0)
    ymin, ymax = min(ys), max(ys)
    pad = (ymax - ymin) * 0.08 or max(abs(ymax) * 0.1, 0.05)
    ymin, ymax = ymin - pad, ymax + pad
    xlog = chart.xlog and chart.xcategories is None and min(xs) > 0
    if chart.xcategories is not None:
        xmin, xmax = -0.5, len(chart.xcategories) - 0.5
    elif xlog:
        xmin, xmax = min(xs) / 1.5, max(xs) * 1.5
    else:
        span = (max(xs) - min(xs)) or 1.0
        xmin, xmax = min(xs) - span * 0.05, max(xs) + span * 0.05

    def sx(x: float) -> float:
        if xlog:
            return ml + pw * (math.log10(x) - math.log10(xmin)) / (math.log10(xmax) - math.log10(xmin))
        return ml + pw * (x - xmin) / (xmax - xmin)

    def sy(y: float) -> float:
        return mt + ph * (1 - (y - ymin) / (ymax - ymin))

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>')
    for t in _nice_ticks(ymin, ymax):
        y = sy(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{ml - 5}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_tick_label(t)}</text>')
    if chart.xcategories is not None:
        xticks = [(float(i), c) for i, c in enumerate(chart.xcategories)]
    else:
        vals = _log_ticks(xmin, xmax) if xlog else _nice_ticks(xmin, xmax)
        xticks = [(t, _tick_label(t)) for t in vals]
    for t, lab in xticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{mt + ph + 15}" text-anchor="middle" class="tick">{escape(lab)}</text>')
    if chart.zero_line and ymin < 0 < ymax:
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" class="zero"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{mt + ph + 34}" text-anchor="middle" class="al">'
               f'{escape(chart.xlabel)}{" (log scale)" if xlog else ""}</text>'
               f'<text transform="translate(14,{mt + ph / 2}) rotate(-90)" text-anchor="middle" class="al">'
               f'{escape(chart.ylabel)}</text>')
    auto = iter(PALETTE * 4)
    n_series = len(chart.series)
    for k, s in enumerate(chart.series):
        colour = to_hex(s.colour or next(auto))
        good = sorted((p for p in s.points if math.isfinite(p.y)), key=lambda p: p.x)
        # nudge series apart by a few pixels so CI bars at one size do not hide each other
        dx = (k - (n_series - 1) / 2) * 3.0 if n_series > 1 and chart.xcategories is None else 0.0
        style = f'stroke="{colour}" stroke-width="{s.width}" opacity="{s.opacity}"'
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        out.append(f'<g class="series" data-series="{escape(s.name)}">')
        if s.line and len(good) > 1:
            path = " ".join(f"{sx(p.x) + dx:.1f},{sy(p.y):.1f}" for p in good)
            out.append(f'<polyline points="{path}" fill="none" {style}'
                       f'{dash}/>')
        for p in good:
            cx, cy = sx(p.x) + dx, sy(p.y)
            if p.lo is not None and p.hi is not None and math.isfinite(p.lo) and math.isfinite(p.hi):
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{sy(p.lo):.1f}" y2="{sy(p.hi):.1f}" {style}/>'
                           f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{sy(p.lo):.1f}" y2="{sy(p.lo):.1f}" {style}/>'
                           f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{sy(p.hi):.1f}" y2="{sy(p.hi):.1f}" {style}/>')
            xlab = chart.xcategories[int(p.x)] if chart.xcategories is not None else _tick_label(p.x)
            tip = (f"{s.name}: {fmt(p.y)} [{fmt(p.lo)}, {fmt(p.hi)}]"
                   f"{f' n={p.n}' if p.n is not None else ''} at {xlab}{f' ({p.note})' if p.note else ''}")
            out.append(f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="3.6" fill="{colour}" '
                       f'opacity="{s.opacity}" data-y="{p.y:.6g}"><title>{escape(tip)}</title></circle>')
        ly = mt + ph + mb + 16 * k + 4
        out.append(f'<line x1="{ml}" x2="{ml + 22}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2.5"'
                   f'{dash}/>'
                   f'<text x="{ml + 28}" y="{ly + 4}" class="lg">{escape(s.name)}</text></g>')
    out.append("</svg>")
    return "".join(out)
