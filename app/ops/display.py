"""How schedules read to people and in JSON: triggers in words, local times, durations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from app.services.schedules import ScheduleView
from cronwork.runs import RunState
from cronwork.timing import CronTrigger, IntervalTrigger, Trigger

_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DAY_SHORT = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_LONG = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
# CSS class of a state's mark and badge, where it differs from the state's name.
MARK_CLASSES: dict[str, str] = {
    RunState.SKIPPED_OVERLAP: "skipped",
    RunState.TIMED_OUT: "timedout",
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
        "next_fire_times": [t.isoformat() for t in view.next_fire_times],
        "enabled": view.enabled,
        "registered": view.registered,
        "paused": view.paused is not None,
        "paused_reason": view.paused["reason"] if view.paused else None,
        "paused_since": view.paused["since"] if view.paused else None,
        "last_run": view.last_run,
        "consecutive_failures": view.consecutive_failures,
    }


def mark_class(state: Any) -> str:
    """The CSS class suffix of a state (m-… for marks, b-… for badges)."""
    return MARK_CLASSES.get(str(state), str(state))


def marks(records: Sequence[dict[str, Any]], zone: str, now: datetime | None = None) -> Markup:
    """Ledger records (newest first) as a row of coloured marks, oldest first, each with a tooltip.

    Built in Python rather than a Jinja macro: the list draws thousands of them per request,
    and a macro call costs ten times this."""
    tz = ZoneInfo(zone)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    items = []
    for record in reversed(records):
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
        items.append(
            f'<li class="mark m-{escape(mark_class(state))}{" manual" if manual else ""}" '
            f'data-state="{escape(state)}" title="{text}"><span class="sr">{text}</span></li>'
        )
    label = f"last {len(records)} ticks, oldest first"
    return Markup(f'<ol class="marks" aria-label="{label}">{"".join(items)}</ol>')


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
    """Seconds as "850ms", "12.3s", "4m05s", "2h10m", "3d4h"."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "–"
    if seconds < 1 and not whole:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if whole or seconds >= 10 else f"{seconds:.1f}s"
    total = int(seconds)
    for big, big_size, small_size, small_unit in (("d", 86400, 3600, "h"), ("h", 3600, 60, "m")):
        if total >= big_size:
            return f"{total // big_size}{big}{(total % big_size) // small_size}{small_unit}"
    minutes, rest = divmod(total, 60)
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"


def trigger_words(trigger: Trigger) -> str:
    """The trigger in plain words: "every day at 02:00", "every 30 minutes", "Mon–Fri at 09:00"."""
    if isinstance(trigger, IntervalTrigger):
        return "every " + _duration_words(int(trigger.every.total_seconds()))
    if isinstance(trigger, CronTrigger):
        return _cron_words(trigger) or trigger.describe()
    return f"once at {trigger.at:%Y-%m-%d %H:%M}"


def _duration_words(seconds: int) -> str:
    parts = []
    for unit, size in _UNITS:
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount} {unit}" + ("s" if amount > 1 else ""))
    if len(parts) == 1 and parts[0].startswith("1 "):
        return parts[0][2:]  # "every hour", not "every 1 hour"
    return " ".join(parts)


def _cron_words(trigger: CronTrigger) -> str | None:
    """Common cron shapes in words; None for the rest (shown as the expression)."""
    fields = trigger.expression.split()
    second = fields.pop(0) if trigger.has_seconds else "0"
    minute, hour, dom, month, dow = fields
    days = _day_words(dom, dow) if month == "*" else None
    if days is None or not second.isdigit():
        return None
    if minute.isdigit() and hour.isdigit():
        clock = f"{int(hour):02d}:{int(minute):02d}" + (f":{int(second):02d}" if int(second) else "")
        return f"{days} at {clock}"
    if int(second):
        return None
    if hour == "*" and minute == "*":
        when = "every minute"
    elif hour == "*" and minute.startswith("*/") and minute[2:].isdigit():
        when = f"every {minute[2:]} minutes"
    elif hour == "*" and minute.isdigit():
        when = f"every hour at :{int(minute):02d}"
    elif hour.startswith("*/") and hour[2:].isdigit() and minute.isdigit():
        when = f"every {hour[2:]} hours at :{int(minute):02d}"
    else:
        return None
    return when if days == "every day" else f"{when}, {days}"


def _day_words(dom: str, dow: str) -> str | None:
    if dom == "*" and dow == "*":
        return "every day"
    if dom.isdigit() and dow == "*":
        return f"on day {int(dom)} of each month"
    if dom != "*":
        return None
    try:
        if dow.count("-") == 1 and "," not in dow:
            low, high = (_day_number(part) for part in dow.split("-"))
            return f"{_DAY_SHORT[low]}–{_DAY_SHORT[high]}"
        days = [_day_number(part) for part in dow.split(",")]
    except (KeyError, ValueError):
        return None
    return f"on {_DAY_LONG[days[0]]}s" if len(days) == 1 else "on " + ", ".join(_DAY_SHORT[d] for d in days)


def _day_number(text: str) -> int:
    number = int(text) if text.isdigit() else _DAY_NAMES[text.lower()]
    if not 0 <= number <= 7:
        raise ValueError(text)
    return number
