"""Inline SVG charts for a schedule's page, drawn on the server (no JavaScript, CSP-safe: colours
come from classes in app/static/ops/ops.css, never from style attributes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from app.ops.display import mark_class, parse_time, short_duration

WIDTH, HEIGHT = 640, 150
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 30  # margins: room for the axes' labels
TIME_TICKS = 5


def series_chart(
    records: Sequence[dict[str, Any]], value: Callable[[dict[str, Any]], float | None], title: str, zone: str
) -> Markup:
    """`value` of each run (seconds) against its tick: a line through dots coloured by state,
    with a time axis (the schedule's zone) and a seconds axis; an empty state without values."""
    points = [(r["tick"], v, r) for r in reversed(records) if (v := value(r)) is not None]
    if not points:
        return Markup(f'<p class="chart-empty muted">{escape(title)}: no run has a value yet.</p>')
    first, last = points[0][0], points[-1][0]
    top = max(max(v for _, v, _ in points), 0.001) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(tick: float) -> float:
        return LEFT + (plot_w * (tick - first) / (last - first) if last > first else plot_w / 2)

    def y(seconds: float) -> float:
        return TOP + plot_h * (1 - max(seconds, 0) / top)

    parts = [_axes(first, last, x, zone)]
    for step in (0, 0.5, 1):  # seconds axis: 0, half, top
        at = y(top * step)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at:.1f}" y2="{at:.1f}"/>')
        label = short_duration(top * step) if step else "0"
        parts.append(f'<text class="label" x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">{label}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v, _) in enumerate(points))
    parts.append(f'<path class="series" d="{path}"/>')
    tz = ZoneInfo(zone)
    for tick, seconds, record in points:
        state = str(record.get("state") or "unknown")
        tip = f"{datetime.fromtimestamp(tick, tz):%Y-%m-%d %H:%M:%S %Z} · {state} · {short_duration(seconds)}"
        parts.append(
            f'<circle class="dot s-{escape(mark_class(state))}" '
            f'cx="{x(tick):.1f}" cy="{y(seconds):.1f}" r="3">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return _svg(title, parts)


def fire_axis(times: Sequence[datetime], zone: str, now: datetime | None = None) -> Markup:
    """The next fire times as marks on a time axis from now."""
    if not times:
        return Markup('<p class="chart-empty muted">Next fire times: no upcoming tick.</p>')
    start = (now or datetime.now(UTC)).timestamp()
    end = max(t.timestamp() for t in times)
    plot_w = WIDTH - LEFT - RIGHT
    height = 70

    def x(at: float) -> float:
        return LEFT + (plot_w * (at - start) / (end - start) if end > start else plot_w)

    tz = ZoneInfo(zone)
    base = height - BOTTOM
    parts = [f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>']
    parts.append(f'<text class="label" x="{LEFT}" y="{base + 16}" text-anchor="middle">now</text>')
    for at in _ticks(start, end)[1:]:
        label = datetime.fromtimestamp(at, tz).strftime("%a %H:%M" if end - start > 86400 else "%H:%M")
        parts.append(_label(x(at), base + 16, label))
    for when in times:
        at = x(when.timestamp())
        tip = escape(f"{when.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}")
        parts.append(
            f'<line class="fire" x1="{at:.1f}" x2="{at:.1f}" y1="{TOP}" y2="{base}">'
            f"<title>{tip}</title></line>"
        )
    return _svg("Next fire times", parts, height)


def start_lag(record: dict[str, Any]) -> float | None:
    """Seconds from a run's tick to its start (None before it started)."""
    started = parse_time(record.get("started_at"))
    return None if started is None else max(started.timestamp() - record["tick"], 0.0)


def duration(record: dict[str, Any]) -> float | None:
    value = record.get("duration")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _axes(first: float, last: float, x: Callable[[float], float], zone: str) -> str:
    tz = ZoneInfo(zone)
    base = HEIGHT - BOTTOM
    out = [
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>',
        f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{base}"/>',
    ]
    fmt = "%m-%d %H:%M" if last - first > 86400 else "%H:%M"
    for at in _ticks(first, last):
        label = datetime.fromtimestamp(at, tz).strftime(fmt)
        out.append(_label(x(at), base + 16, label))
    return "".join(out)


def _label(x: float, y: float, text: str) -> str:
    return f'<text class="label" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(text)}</text>'


def _ticks(start: float, end: float) -> list[float]:
    if end <= start:
        return [start]
    return [start + (end - start) * i / (TIME_TICKS - 1) for i in range(TIME_TICKS)]


def _svg(title: str, parts: list[str], height: int = HEIGHT) -> Markup:
    label = escape(title)
    return Markup(
        f'<figure class="chart"><figcaption>{label}</figcaption>'
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg></figure>'
    )
