"""Inline SVG charts for cards and reports: metrics across versions, and deployments over time.

Pure functions from data to a self-contained ``<svg>`` element, marked safe for
Jinja2. Every piece of text that came from the log is escaped, so a hostile
model or metric name is shown as text. No plotting library is needed, and the
output is deterministic: the same data gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from markupsafe import Markup, escape

__all__ = ["TimelineMark", "metric_chart", "timeline_chart"]

#: Okabe-Ito, readable with the common colour-vision deficiencies, then two darker extras.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#7F3C8D",
    "#3D7F3C",
)
#: After the palette runs out, lines also differ by dash pattern.
DASHES = ("", "6 3", "2 3", "8 3 2 3")
ROLLBACK = "#C62828"
RETIRE = "#757575"
FONT = 'font-family="Helvetica, Arial, sans-serif"'

Kind = Literal["deploy", "rollback", "retire"]


@dataclass(frozen=True, slots=True)
class TimelineMark:
    """One move in an environment: a deploy, a rollback to an earlier version, or a retirement."""

    time: datetime
    version: str
    kind: Kind
    seq: int | None = None  # the event's seq: names the mark when times are too close to


def _num(value: float) -> str:
    """Format a coordinate compactly and deterministically."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _label(value: float) -> str:
    """Format a metric value for an axis or a tooltip."""
    return f"{value:.4g}"


def _short(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters with an ellipsis, so labels never overrun."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _open(width: int, height: int, title: str) -> str:
    label = escape(title or "chart")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="auditml-chart" role="img" '
        f'aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}">'
        f"<title>{label}</title>"
    )


def _no_data(width: int, height: int, title: str) -> Markup:
    height = min(height, 80)
    return Markup(
        _open(width, height, title)
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafafa" '
        f'stroke="#ccc"/><text x="{width // 2}" y="{height // 2 + 5}" text-anchor="middle" '
        f'font-size="13" fill="#666" {FONT}>No data</text></svg>'
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Return round tick values covering ``low``..``high`` (about ``count`` of them)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    steps = max(1, math.ceil((high - start) / step - 1e-9))
    return [round(start + i * step, 12) for i in range(steps + 1)]


def _versions(series: Mapping[str, Sequence[tuple[str, float | None]]]) -> list[str]:
    """Return the version labels of all series, in order of first appearance."""
    seen: dict[str, None] = {}
    for points in series.values():
        for version, _ in points:
            seen.setdefault(version, None)
    return list(seen)


def metric_chart(
    series: Mapping[str, Sequence[tuple[str, float | None]]],
    *,
    title: str = "",
    width: int = 640,
    height: int = 240,
) -> Markup:
    """Draw each metric's value across versions as a line; ``None`` leaves a gap."""
    versions = _versions(series)
    values = [
        float(v)
        for points in series.values()
        for _, v in points
        if v is not None and math.isfinite(v)
    ]
    if not versions or not values:
        return _no_data(width, height, title)

    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]
    per_row = max(1, (width - 24) // 150)
    legend_rows = math.ceil(len(series) / per_row)
    top, left, right, bottom = (28 if title else 12), 56, 16, 36
    plot_h = height - top - bottom
    total_h = height + legend_rows * 18 + 4
    plot_w = width - left - right

    def x_of(index: int) -> float:
        if len(versions) == 1:
            return left + plot_w / 2
        return left + 20 + (plot_w - 40) * index / (len(versions) - 1)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    out = [_open(width, total_h, title)]
    out.append(f'<g {FONT} font-size="11" fill="#333">')
    if title:
        out.append(
            f'<text x="{left}" y="17" font-size="13" font-weight="bold">{escape(title)}</text>'
        )
    for tick in ticks:
        y = _num(y_of(tick))
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y}" y2="{y}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{y}" dy="4" text-anchor="end">{_label(tick)}</text>'
        )
    label_room = max(4, int(plot_w / max(len(versions), 1) / 6.5))
    for index, version in enumerate(versions):
        x = _num(x_of(index))
        out.append(
            f'<text x="{x}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"<title>{escape(version)}</title>{escape(_short(version, label_room))}</text>"
        )
    out.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#999"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="#999"/>'
    )
    position = {version: index for index, version in enumerate(versions)}
    for number, (metric, points) in enumerate(series.items()):
        colour = PALETTE[number % len(PALETTE)]
        dash = DASHES[(number // len(PALETTE)) % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        dots: list[str] = []
        for version, value in points:
            if value is None or not math.isfinite(value):
                segment = []
                segments.append(segment)
                continue
            x, y = _num(x_of(position[version])), _num(y_of(float(value)))
            segment.append(f"{x},{y}")
            tip = escape(f"{metric} @ {version}: {_label(float(value))}")
            dots.append(
                f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"><title>{tip}</title></circle>'
            )
        for run in segments:
            if len(run) > 1:
                out.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
                    f'points="{" ".join(run)}"/>'
                )
        out.extend(dots)
        row, column = divmod(number, per_row)
        lx, ly = 24 + column * 150, height + row * 18
        out.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/><text x="{lx + 24}" y="{ly}"><title>{escape(metric)}'
            f"</title>{escape(_short(metric, 20))}</text>"
        )
    out.append("</g></svg>")
    return Markup("".join(out))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time_ticks(start: datetime, end: datetime, count: int = 5) -> list[tuple[float, str]]:
    """Return ``count`` evenly spaced (fraction, label) ticks between ``start`` and ``end``."""
    span = (end - start).total_seconds()
    fmt = "%Y-%m-%d" if span >= 3 * 86400 else "%m-%d %H:%M"
    return [
        (i / (count - 1), (start + (end - start) * (i / (count - 1))).strftime(fmt))
        for i in range(count)
    ]


#: Below this span a timeline is drawn in event order rather than to time scale.
ORDINAL_SPAN = timedelta(hours=2)


def _order_ticks(
    moments: Sequence[datetime], seqs: Mapping[datetime, int], count: int = 6
) -> list[tuple[float, str]]:
    """Return (fraction, label) ticks at up to ``count`` of the moments, spread by order.

    A tick names the event's seq when it is known (times seconds apart all read alike),
    else its time to the second.
    """
    n = len(moments)
    if n <= count:
        chosen = list(range(n))
    else:  # spread over the whole range, first and last included
        chosen = sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})
    return [
        (
            (i + 0.5) / n,
            f"event {seqs[moments[i]]}" if moments[i] in seqs else moments[i].strftime("%H:%M:%S"),
        )
        for i in chosen
    ]


def timeline_chart(lanes: Mapping[str, Sequence[TimelineMark]], *, width: int = 720) -> Markup:
    """Draw one lane per environment: which version ran when, with rollbacks in red."""
    marks = [(env, _utc(m.time), m) for env, items in lanes.items() for m in items]
    if not marks:
        return _no_data(width, 80, "Deployment timeline")
    start = min(t for _, t, _ in marks)
    end = max(t for _, t, _ in marks)
    if end <= start:
        start, end = start - timedelta(hours=12), end + timedelta(hours=12)
    left, right, top, lane_h = 120, 24, 30, 46
    plot_w = width - left - right
    height = top + lane_h * len(lanes) + 34
    span = (end - start).total_seconds()
    moments = sorted({t for _, t, _ in marks})
    # Decisions minutes or seconds apart would sit on one spot under one repeated tick
    # label: over a short span the axis shows their order instead, evenly spaced.
    ordinal = len(moments) > 1 and end - start < ORDINAL_SPAN
    rank = {moment: i for i, moment in enumerate(moments)}

    def x_of(moment: datetime) -> float:
        if ordinal:
            return left + plot_w * (rank[moment] + 0.5) / len(moments)
        return left + plot_w * (moment - start).total_seconds() / span

    colours: dict[str, str] = {}
    out = [_open(width, height, "Deployment timeline")]
    out.append(f'<g {FONT} font-size="11" fill="#333">')
    seqs = {t: m.seq for _, t, m in sorted(marks, key=lambda x: x[1]) if m.seq is not None}
    ticks = _order_ticks(moments, seqs) if ordinal else _time_ticks(start, end)
    for fraction, text in ticks:
        tick_x = _num(left + plot_w * fraction)
        anchor = "start" if fraction == 0 else "end" if fraction == 1 else "middle"
        out.append(
            f'<line x1="{tick_x}" x2="{tick_x}" y1="{top - 6}" y2="{height - 34}" stroke="#eee"/>'
            f'<text x="{tick_x}" y="{top - 12}" text-anchor="{anchor}" fill="#666">{text}</text>'
        )
    for lane, (env, items) in enumerate(lanes.items()):
        mid = top + lane * lane_h + lane_h / 2
        out.append(
            f'<text x="{left - 10}" y="{_num(mid + 4)}" text-anchor="end" font-weight="bold">'
            f"<title>{escape(env)}</title>{escape(_short(env, 16))}</text>"
            f'<line x1="{left}" x2="{width - right}" y1="{_num(mid)}" y2="{_num(mid)}" '
            f'stroke="#ccc"/>'
        )
        ordered = sorted(((_utc(m.time), m) for m in items), key=lambda pair: pair[0])
        for index, (moment, mark) in enumerate(ordered):
            if mark.kind == "retire":
                continue
            colour = colours.setdefault(mark.version, PALETTE[len(colours) % len(PALETTE)])
            until = x_of(ordered[index + 1][0]) if index + 1 < len(ordered) else left + plot_w
            x1, x2 = x_of(moment), max(until, x_of(moment) + 2)
            out.append(
                f'<rect x="{_num(x1)}" y="{_num(mid - 7)}" width="{_num(x2 - x1)}" height="14" '
                f'fill="{colour}" fill-opacity="0.35"/>'
            )
        last_label = -1e9
        for moment, mark in ordered:
            x = x_of(moment)
            tip = escape(f"{env}: {mark.kind} {mark.version} at {moment:%Y-%m-%d %H:%M} UTC")
            if mark.kind == "rollback":
                shape = (
                    f'<path d="M{_num(x - 6)},{_num(mid - 9)} L{_num(x + 6)},{_num(mid - 9)} '
                    f'L{_num(x)},{_num(mid + 3)} Z" fill="{ROLLBACK}">'
                )
                end_tag = "</path>"
            elif mark.kind == "retire":
                shape = (
                    f'<rect x="{_num(x - 5)}" y="{_num(mid - 5)}" width="10" height="10" '
                    f'fill="{RETIRE}">'
                )
                end_tag = "</rect>"
            else:
                shape = f'<circle cx="{_num(x)}" cy="{_num(mid)}" r="5" fill="#263238">'
                end_tag = "</circle>"
            out.append(f"{shape}<title>{tip}</title>{end_tag}")
            if x - last_label >= 44:
                fill = ROLLBACK if mark.kind == "rollback" else "#333"
                out.append(
                    f'<text x="{_num(x)}" y="{_num(mid + 20)}" text-anchor="middle" '
                    f'fill="{fill}">{escape(_short(mark.version, 8))}</text>'
                )
                last_label = x
    legend_y = height - 12
    kinds = {mark.kind for _, _, mark in marks}
    legend = [
        f'<circle cx="{left + 6}" cy="{legend_y - 4}" r="5" fill="#263238"/>'
        f'<text x="{left + 16}" y="{legend_y}">deploy</text>'
    ]
    if "rollback" in kinds:  # the legend names only what the chart shows
        legend.append(
            f'<path d="M{left + 74},{legend_y - 10} L{left + 86},{legend_y - 10} '
            f'L{left + 80},{legend_y + 2} Z" fill="{ROLLBACK}"/>'
            f'<text x="{left + 92}" y="{legend_y}" fill="{ROLLBACK}">rollback</text>'
        )
    if "retire" in kinds:
        legend.append(
            f'<rect x="{left + 156}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{RETIRE}"/><text x="{left + 172}" y="{legend_y}">retire</text>'
        )
    out.extend(legend)
    if ordinal:
        out.append(
            f'<text x="{width - right}" y="{legend_y}" text-anchor="end" fill="#666">'
            "events in order, evenly spaced (not to time scale)</text>"
        )
    out.append("</g></svg>")
    return Markup("".join(out))
