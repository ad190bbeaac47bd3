"""Inline SVG figures for the HTML report: a heatmap with a diverging colour scale, a labelled scatter plot and
line charts with error bars.

Plain string building, no plotting library and no JavaScript. Every caller-supplied text is escaped here. Text
widths are estimated (``CHAR_W`` of the font size per character) to size margins so labels never overlap the plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif"
CHAR_W = 0.62  # average glyph width as a share of the font size (generous for sans-serif)
NEGATIVE = (202, 0, 32)  # diverging scale: red for losses, white at zero, blue for gains
POSITIVE = (5, 113, 176)
MISSING = "#e6e6e6"


def text_width(text: str, size: float) -> float:
    """Estimated rendered width of ``text`` at font ``size`` (px)."""
    return len(text) * size * CHAR_W


def _mix(colour: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    share = min(max(share, 0.0), 1.0)
    return tuple(round(255 + (c - 255) * share) for c in colour)  # type: ignore[return-value]


def diverging_colour(value: float, limit: float) -> str:
    """``value`` on a red-white-blue scale saturating at ``±limit``, as ``rgb(...)``."""
    share = abs(value) / limit if limit > 0 else 0.0
    r, g, b = _mix(POSITIVE if value >= 0 else NEGATIVE, share)
    return f"rgb({r},{g},{b})"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = start
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt_tick(value: float) -> str:
    return f"{value:.3g}" if value != 0 else "0"


@dataclass(frozen=True)
class _Plot:
    """A chart's plotting area (pixels) and the data ranges it shows; maps data to pixel coordinates."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.width

    def py(self, y: float) -> float:
        return self.top + (1 - (y - self.y0) / (self.y1 - self.y0)) * self.height


def _open(css_class: str, width: float, height: float, title: str) -> str:
    """The opening ``<svg>`` tag of a chart, named by ``title`` (its accessible name and first ``<title>`` child,
    shown as a tooltip)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}" style="{FONT}">'
        f"<title>{escape(title)}</title>"
    )


def _axes(plot: _Plot, css_class: str, size: tuple[float, float], x_ticks: Sequence[float], title: str) -> list[str]:
    """The opening ``<svg>`` tag of a ``size`` (width, height) chart titled ``title``, the plot's background and the
    tick grid with its labels (``x_ticks`` as given, y ticks chosen by `nice_ticks`)."""
    width, height = size
    bottom = plot.top + plot.height
    out = [
        _open(css_class, width, height, title),
        f'<rect x="{plot.left}" y="{plot.top}" width="{plot.width:.1f}" height="{plot.height:.1f}" fill="#fafafa" '
        'stroke="#888"/>',
    ]
    for tick in x_ticks:
        x = plot.px(tick)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot.top}" y2="{bottom:.1f}" stroke="#e2e2e2"/>'
            f'<text x="{x:.1f}" y="{bottom + 16:.1f}" text-anchor="middle" font-size="11">{_fmt_tick(tick)}</text>'
        )
    for tick in nice_ticks(plot.y0, plot.y1):
        y = plot.py(tick)
        out.append(
            f'<line x1="{plot.left}" x2="{plot.left + plot.width:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e2e2"/>'
            f'<text x="{plot.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_fmt_tick(tick)}</text>'
        )
    return out


def _axis_titles(plot: _Plot, height: float, x_label: str, y_label: str) -> list[str]:
    """The x title under the plot and the y title rotated along its left side, then the closing tag."""
    cy = plot.top + plot.height / 2
    return [
        f'<text x="{plot.left + plot.width / 2:.1f}" y="{height - 12:.1f}" text-anchor="middle" font-size="13" '
        f'font-weight="600">{escape(x_label)}</text>',
        f'<text x="16" y="{cy:.1f}" text-anchor="middle" font-size="13" font-weight="600" '
        f'transform="rotate(-90 16 {cy:.1f})">{escape(y_label)}</text>',
        "</svg>",
    ]


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: dict[tuple[str, str], float],
    labels: dict[tuple[str, str], str],
    *,
    title: str,
    x_label: str,
    y_label: str,
    legend_label: str,
    tooltips: dict[tuple[str, str], str] | None = None,
    id_prefix: str = "hm",
) -> str:
    """A ``rows`` × ``columns`` grid coloured by ``values[(row, column)]`` (diverging around zero), each cell showing
    ``labels[(row, column)]``; absent cells are grey with a dash. Column labels are rotated below the grid; a colour
    bar with its ``legend_label`` sits on the right."""
    size, small = 12, 11
    cell_w = max(96.0, max((text_width(t, size) for t in labels.values()), default=0) + 14)
    cell_h = 34.0
    left = max((text_width(r, size) for r in rows), default=0) + 40  # row labels + the rotated y-axis title
    top = 14.0
    grid_w, grid_h = cell_w * len(columns), cell_h * len(rows)
    col_drop = max((text_width(c, size) for c in columns), default=0) * math.sin(math.radians(40))
    bottom = col_drop + 40  # rotated column labels + the x-axis title
    legend_x = left + grid_w + 30
    width = legend_x + 84  # colour bar, tick values and the rotated legend title
    bar_h = max(grid_h, 140) - 20  # the colour bar keeps a readable length for one or two rows
    height = max(top + grid_h + bottom, top + bar_h + 30)
    limit = max((abs(v) for v in values.values() if math.isfinite(v)), default=0.0) or 1.0
    tips = tooltips or {}
    out = [
        _open("heatmap", width, height, title),
        f'<defs><linearGradient id="{id_prefix}-scale" x1="0" y1="1" x2="0" y2="0">'
        f'<stop offset="0%" stop-color="{diverging_colour(-limit, limit)}"/>'
        '<stop offset="50%" stop-color="rgb(255,255,255)"/>'
        f'<stop offset="100%" stop-color="{diverging_colour(limit, limit)}"/></linearGradient></defs>',
    ]
    for i, row in enumerate(rows):
        y = top + i * cell_h
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end" font-size="{size}">'
            f"{escape(row)}</text>"
        )
        for j, column in enumerate(columns):
            x = left + j * cell_w
            key = (row, column)
            value = values.get(key)
            present = value is not None and math.isfinite(value)
            fill = diverging_colour(value, limit) if present else MISSING  # type: ignore[arg-type]
            ink = "#fff" if present and abs(value) / limit > 0.6 else "#111"  # type: ignore[arg-type]
            label = labels.get(key, "—") if present else "—"
            tip = f"<title>{escape(tips[key])}</title>" if key in tips else ""
            out.append(
                f'<g class="cell">{tip}<rect x="{x:.1f}" y="{y:.1f}" width="{cell_w:.1f}" height="{cell_h:.1f}" '
                f'fill="{fill}" stroke="#fff" stroke-width="1.5"/>'
                f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="middle" '
                f'font-size="{size}" fill="{ink}">{escape(label)}</text></g>'
            )
    for j, column in enumerate(columns):
        x, y = left + (j + 0.5) * cell_w, top + grid_h + 12
        out.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end" font-size="{size}" '
            f'transform="rotate(-40 {x:.1f} {y:.1f})">{escape(column)}</text>'
        )
    out.append(
        f'<text x="{left + grid_w / 2:.1f}" y="{top + grid_h + bottom - 10:.1f}" text-anchor="middle" font-size="13" '
        f'font-weight="600">{escape(x_label)}</text>'
    )
    cy = top + grid_h / 2
    out.append(
        f'<text x="14" y="{cy:.1f}" text-anchor="middle" font-size="13" font-weight="600" '
        f'transform="rotate(-90 14 {cy:.1f})">{escape(y_label)}</text>'
    )
    out.append(
        f'<rect x="{legend_x:.1f}" y="{top + 10:.1f}" width="16" height="{bar_h:.1f}" '
        f'fill="url(#{id_prefix}-scale)" stroke="#999"/>'
    )
    for value, share in ((limit, 0.0), (0.0, 0.5), (-limit, 1.0)):
        tick = f"{value:+.2g}" if value else "0"
        y = top + 10 + share * bar_h
        out.append(
            f'<line x1="{legend_x + 16:.1f}" x2="{legend_x + 21:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555"/>'
            f'<text x="{legend_x + 24:.1f}" y="{y + 4:.1f}" font-size="{small}">{tick}</text>'
        )
    lx, ly = legend_x + 62, top + 10 + bar_h / 2
    out.append(
        f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="middle" font-size="{small}" '
        f'transform="rotate(-90 {lx:.1f} {ly:.1f})">{escape(legend_label)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def scatter(
    points: Sequence[tuple[str, float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: float = 720,
    height: float = 460,
    point_class: str = "point",
) -> str:
    """A scatter plot of ``(label, x, y)`` points, each labelled beside its marker, with ticked, titled axes."""
    size = 12
    label_room = max((text_width(p[0], size) for p in points), default=0) + 12
    left, right, top, bottom = 64.0, min(label_room, width * 0.35), 16.0, 52.0
    xs = [p[1] for p in points] or [0.0]
    ys = [p[2] for p in points] or [0.0]

    def padded(values: list[float]) -> tuple[float, float]:
        low, high = min(values), max(values)
        span = high - low or max(abs(high), 1.0)
        return low - 0.08 * span, high + 0.08 * span

    (x0, x1), (y0, y1) = padded(xs), padded(ys)
    plot = _Plot(left, top, width - left - right, height - top - bottom, x0, x1, y0, y1)
    out = _axes(plot, "scatter", (width, height), nice_ticks(x0, x1), title)
    for label, x, y in points:
        cx, cy = plot.px(x), plot.py(y)
        out.append(
            f'<g class="{escape(point_class)}"><title>{escape(label)}: ({x:.3g}, {y:.3g})</title>'
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5.5" fill="rgb(5,113,176)" stroke="#fff"/>'
            f'<text x="{cx + 8:.1f}" y="{cy + 4:.1f}" font-size="{size}">{escape(label)}</text></g>'
        )
    out += _axis_titles(plot, height, x_label, y_label)
    return "".join(out)


SERIES_COLOURS = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#7b3294",
    "#e69f00",
    "#56b4e9",
    "#000000",
    "#cc79a7",
)  # Okabe-Ito-like


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference: float | None = None,
    width: float = 720,
    height: float = 420,
) -> str:
    """One line per named series of ``(x, y, spread)`` points, each point with a ±spread error bar, a legend on
    the right and an optional dashed horizontal ``reference`` line (e.g. the full-data level). Series are dodged
    a few pixels apart horizontally so error bars at the same x stay readable."""
    size = 12
    legend_w = max((text_width(name, size) for name in series), default=0) + 40
    left, right, top, bottom = 64.0, legend_w, 16.0, 52.0
    points = [p for values in series.values() for p in values]
    xs = [p[0] for p in points] or [0.0]
    lows = [p[1] - p[2] for p in points] + ([reference] if reference is not None else [])
    highs = [p[1] + p[2] for p in points] + ([reference] if reference is not None else [])
    x_span = (max(xs) - min(xs)) or 1.0
    x0, x1 = min(xs) - 0.05 * x_span, max(xs) + 0.05 * x_span
    y_span = (max(highs or [1.0]) - min(lows or [0.0])) or 1.0
    y0, y1 = min(lows or [0.0]) - 0.08 * y_span, max(highs or [1.0]) + 0.08 * y_span
    plot = _Plot(left, top, width - left - right, height - top - bottom, x0, x1, y0, y1)
    out = _axes(plot, "lines", (width, height), sorted(set(xs)), title)
    if reference is not None:
        y = plot.py(reference)
        out.append(
            f'<line x1="{left}" x2="{left + plot.width:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#333" '
            'stroke-dasharray="5,4"/>'
        )
    for i, (name, values) in enumerate(series.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ordered = sorted(values)
        dodge = (i - (len(series) - 1) / 2) * 4.0
        path = " ".join(f"{plot.px(x) + dodge:.1f},{plot.py(y):.1f}" for x, y, _ in ordered)
        out.append(f'<g class="series"><title>{escape(name)}</title>')
        if len(ordered) > 1:
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, spread in ordered:
            cx = plot.px(x) + dodge
            out.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{plot.py(y - spread):.1f}" y2="{plot.py(y + spread):.1f}" '
                f'stroke="{colour}"/><circle cx="{cx:.1f}" cy="{plot.py(y):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(name)}: x {x:.3g}, y {y:.3g} ± {spread:.2g}</title></circle>"
            )
        legend_y = top + 8 + i * 18
        out.append(
            f'<line x1="{width - right + 12:.1f}" x2="{width - right + 30:.1f}" y1="{legend_y:.1f}" '
            f'y2="{legend_y:.1f}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{width - right + 34:.1f}" y="{legend_y + 4:.1f}" font-size="{size}">{escape(name)}</text></g>'
        )
    out += _axis_titles(plot, height, x_label, y_label)
    return "".join(out)
