"""Tick → APP_TIMEZONE windows: days (DST included), hours (half-hour zones included), ticks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from app.services.timewindows import app_zone, previous_day, previous_hour, resolve_tick


def test_previous_day_in_shanghai() -> None:
    tick = datetime(2026, 1, 5, 17, 3, 20, tzinfo=UTC)  # 2026-01-06 01:03:20 in Shanghai
    day = previous_day(tick, ZoneInfo("Asia/Shanghai"))
    assert (day.day, day.start, day.end) == (
        date(2026, 1, 5),
        datetime(2026, 1, 4, 16, tzinfo=UTC),
        datetime(2026, 1, 5, 16, tzinfo=UTC),
    )


def test_previous_day_across_a_dst_change_is_23_hours() -> None:
    zone = ZoneInfo("America/New_York")
    day = previous_day(datetime(2026, 3, 9, 6, tzinfo=zone), zone)
    assert day.day == date(2026, 3, 8)
    assert day.end - day.start == timedelta(hours=23)


def test_previous_hour_in_a_half_hour_zone() -> None:
    zone = ZoneInfo("Asia/Kolkata")  # UTC+05:30: local hours start at :30 UTC
    hour = previous_hour(datetime(2026, 1, 5, 10, 5, tzinfo=zone), zone)
    assert (hour.start, hour.end) == (datetime(2026, 1, 5, 3, 30, tzinfo=UTC), datetime(2026, 1, 5, 4, 30, tzinfo=UTC))


def test_previous_hour_on_the_hour() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    hour = previous_hour(datetime(2026, 1, 5, 9, 0, tzinfo=UTC), zone)
    assert (hour.start, hour.end) == (datetime(2026, 1, 5, 8, tzinfo=UTC), datetime(2026, 1, 5, 9, tzinfo=UTC))
    assert hour.start_epoch == int(hour.start.timestamp())


def test_resolve_tick() -> None:
    assert resolve_tick("2026-01-06T01:03:20+08:00") == datetime(2026, 1, 5, 17, 3, 20, tzinfo=UTC)
    assert resolve_tick("2026-01-06T01:03:20+08:00").tzinfo is UTC
    assert abs(resolve_tick(None) - datetime.now(UTC)) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="no UTC offset"):
        resolve_tick("2026-01-06T01:03:20")


def test_app_zone_reads_the_config(app: Flask) -> None:
    assert app_zone() == ZoneInfo(app.config["APP_TIMEZONE"])
    app.config["APP_TIMEZONE"] = "Europe/Paris"
    assert app_zone() == ZoneInfo("Europe/Paris")
