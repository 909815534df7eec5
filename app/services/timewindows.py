"""A run's tick and the business-time windows it covers (APP_TIMEZONE days and hours).

Jobs that summarise a period (yesterday's readings, the last hour's excursions, yesterday's
runs) derive it from the tick, not from the clock: a late or requeued run then processes the
occurrence it belongs to. Windows are half-open `[start, end)` in aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app

from app.models.base import now_utc

DEFAULT_APP_TIMEZONE = "Asia/Shanghai"
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    """A half-open interval of UTC instants; `day` is the local date of a day window."""

    start: datetime
    end: datetime
    day: date | None = None

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_epoch(self) -> int:
        return int(self.end.timestamp())


def resolve_tick(scheduled_for: str | None) -> datetime:
    """The tick the scheduler passed (ISO 8601 with offset) as aware UTC, or now when None.

    Raises:
        ValueError: the string is not ISO 8601 or has no UTC offset.
    """
    if scheduled_for is None:
        return now_utc()
    tick = datetime.fromisoformat(scheduled_for)
    if tick.tzinfo is None or tick.utcoffset() is None:
        raise ValueError(f"scheduled_for={scheduled_for!r} has no UTC offset")
    return tick.astimezone(UTC)


def app_zone() -> ZoneInfo:
    """The business time zone of the app (`APP_TIMEZONE`)."""
    return ZoneInfo(current_app.config.get("APP_TIMEZONE") or DEFAULT_APP_TIMEZONE)


def local_day(day: date, zone: ZoneInfo) -> Window:
    """The local calendar day `day` in `zone`, as UTC instants (23 or 25 h on DST days)."""
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return Window(start, end, day)


def previous_day(tick: datetime, zone: ZoneInfo) -> Window:
    """The local day before the one `tick` falls in."""
    return local_day(tick.astimezone(zone).date() - timedelta(days=1), zone)


def previous_hour(tick: datetime, zone: ZoneInfo) -> Window:
    """The full local hour before the one `tick` falls in (zones with :30 offsets included)."""
    local = tick.astimezone(zone)
    end = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return Window(end - HOUR, end)
