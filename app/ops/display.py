"""How schedules read to people and in JSON: triggers in words, local times, durations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from cron_descriptor import (  # type: ignore[import-untyped]  # ships no py.typed
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)
from markupsafe import Markup, escape

from app.services.schedules import ScheduleView
from cronwork.runs import RunState
from cronwork.timing import CronTrigger, IntervalTrigger, Trigger, format_duration

_CRON_OPTIONS = Options()
_CRON_OPTIONS.use_24hour_time_format = True
# CSS class of a state's mark and badge, where it differs from the state's name.
MARK_CLASSES: dict[str, str] = {
    RunState.SKIPPED_OVERLAP: "skipped",
    RunState.TIMED_OUT: "timedout",
    # Waiting for the running run (buffer_one, cancel_other): drawn as a queued run.
    RunState.BUFFERED: "enqueued",
    # Stopped by a newer run (cancel_other): not a failure, drawn as a run that did not happen.
    RunState.CANCELLED: "skipped",
}


def schedule_json(view: ScheduleView) -> dict[str, Any]:
    """The API's form of a schedule: times in ISO 8601 UTC."""
    spec = view.spec
    return {
        "name": spec.name,
        "description": spec.description,
        "func": spec.func,
        "queue": spec.queue,
        "trigger": trigger_words(spec.trigger),
        "trigger_spec": spec.trigger.describe(),
        "timezone": spec.timezone,
        "overlap": str(spec.overlap),
        "rate_limit": spec.rate_limit.text if spec.rate_limit else None,
        "jitter": spec.jitter,
        "next_fire_times": [t.isoformat() for t in view.next_fire_times],
        "enabled": view.enabled,
        "registered": view.registered,
        "source": str(view.source),
        "clash": view.clash,
        "paused": view.paused is not None,
        "paused_reason": view.paused["reason"] if view.paused else None,
        "paused_since": view.paused["since"] if view.paused else None,
        "last_run": view.last_run,
        "consecutive_failures": view.consecutive_failures,
    }


def mark_class(state: Any) -> str:
    """The CSS class suffix of a state (m-… for marks, b-… for badges)."""
    return MARK_CLASSES.get(str(state), str(state))


def marks(
    records: Sequence[dict[str, Any]],
    zone: str,
    now: datetime | None = None,
    columns: int = 0,
    href: str = "",
) -> Markup:
    """Ledger records (newest first) as a row of coloured cells, oldest first, each with a tooltip
    (tick, state, duration, error).

    With `columns`, the row is that many cells, the newest at the right and empty cells for runs
    not there, so the rows of the schedules list line up as a grid (runs ago × schedules). With
    `href` (a schedule's page), each cell links to its run's row there. Built in Python rather
    than a Jinja macro: the list draws thousands of them per request, and a macro call costs
    ten times this."""
    tz = ZoneInfo(zone)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    shown = records[:columns] if columns else records
    items = ['<li class="mark m-none"></li>'] * (columns - len(shown)) if columns else []
    link = escape(href)
    for record in reversed(shown):
        state = str(record.get("state") or "unknown")
        manual = record.get("trigger") == "manual"
        tip = [_wall_time(datetime.fromtimestamp(record["tick"], tz), today), state.replace("_", " ")]
        if manual:
            tip.append("manual")
        duration = record.get("duration")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            tip.append(short_duration(duration))
        if record.get("error"):
            tip.append(f"{record.get('error_type') or 'Error'}: {record['error']}")
        text = escape(" · ".join(tip))
        inner = f'<span class="sr">{text}</span>'
        if href:
            inner = f'<a href="{link}#run-{int(record["tick"])}">{inner}</a>'
        items.append(
            f'<li class="mark m-{escape(mark_class(state))}{" manual" if manual else ""}" '
            f'data-state="{escape(state)}" title="{text}">{inner}</li>'
        )
    label = f"last {len(shown)} ticks, oldest first"
    grid = " grid-row" if columns else ""
    return Markup(f'<ol class="marks{grid}" aria-label="{label}">{"".join(items)}</ol>')


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO string or epoch seconds; None when absent or unreadable."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def local_time(value: Any, zone: str, now: datetime | None = None) -> str:
    """Wall time in `zone`: 14:00 CST today, Tue 02:00 CST within a week, else with the date."""
    when = parse_time(value)
    if when is None:
        return "–"
    tz = ZoneInfo(zone)
    return _wall_time(when.astimezone(tz), (now or datetime.now(UTC)).astimezone(tz).date())


def _wall_time(local: datetime, today: date) -> str:
    """`local_time` of an instant already in its zone, `today` being that zone's date."""
    seconds = f":{local:%S}" if local.second else ""
    if local.date() == today:
        return f"{local:%H:%M}{seconds} {local:%Z}"
    if abs((local.date() - today).days) < 7:
        return f"{local:%a %H:%M}{seconds} {local:%Z}"
    return f"{local:%Y-%m-%d %H:%M}{seconds} {local:%Z}"


def relative(value: Any, now: datetime | None = None) -> str:
    """Relative to now: in 3m, 5s ago, 2h10m ago."""
    when = parse_time(value)
    if when is None:
        return ""
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    text = short_duration(abs(delta), whole=True)
    return f"in {text}" if delta > 0 else f"{text} ago"


def start_latency(record: dict[str, Any]) -> float | None:
    """Seconds from a ledger record's tick to its start, or None before it started."""
    started = parse_time(record.get("started_at"))
    return None if started is None else started.timestamp() - record["tick"]


def short_duration(seconds: Any, whole: bool = False) -> str:
    """Seconds as the pages show them ("850ms", "12s", "4m5s", "2h10m"), "–" when not a number;
    cronwork.timing.format_duration does the formatting."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "–"
    return format_duration(seconds, largest=2, fraction=not whole)


def trigger_words(trigger: Trigger) -> str:
    """The trigger in plain words: "at 02:00", "every 30 minutes", "at 09:00, Monday through Friday"."""
    if isinstance(trigger, IntervalTrigger):
        words = format_duration(trigger.every, words=True)
        return "every " + (words[2:] if words.startswith("1 ") and " " not in words[2:] else words)
    if isinstance(trigger, CronTrigger):
        return cron_words(trigger.expression)
    return f"once at {trigger.at:%Y-%m-%d %H:%M}"


@lru_cache(maxsize=4096)
def cron_words(expression: str) -> str:
    """A cron expression in words by cron-descriptor, lower-cased like the interval texts.

    cron-descriptor reads 6 fields as seconds first, like Cronwork (docs/schedule.md), and
    drops a zero second ("0 0 2 * * *" -> "at 02:00"); tests/app/test_ops_display.py pins both.
    Cached: the list draws the same few expressions on every row."""
    try:
        text = str(ExpressionDescriptor(expression, _CRON_OPTIONS).get_description())
    except (FormatException, MissingFieldException, WrongArgumentException):
        return f"cron {expression}"
    return text[:1].lower() + text[1:]
