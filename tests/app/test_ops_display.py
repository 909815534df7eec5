"""Triggers in words, short durations and wall-clock times as the pages and the CLI show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.ops.display import local_time, relative, short_duration, trigger_words
from cronwork.timing import CronTrigger, IntervalTrigger, OneOffTrigger


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("0 * * * *", "every hour at :00"),
        ("5 * * * *", "every hour at :05"),
        ("0 2 * * *", "every day at 02:00"),
        ("20 3 1 * * *", "every day at 01:03:20"),
        ("0 3 * * 0", "on Sundays at 03:00"),
        ("0 9 * * 1-5", "Mon–Fri at 09:00"),
        ("0 9 * * MON-FRI", "Mon–Fri at 09:00"),
        ("0 9 * * 1,3,5", "on Mon, Wed, Fri at 09:00"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("30 4 15 * *", "on day 15 of each month at 04:30"),
        ("*/10 * * * 1-5", "every 10 minutes, Mon–Fri"),
        ("0 0 1 1 *", "cron 0 0 1 1 *"),  # anything unusual: the expression itself
        ("0 8-18 * * *", "cron 0 8-18 * * *"),
    ],
)
def test_cron_in_words(expression: str, words: str) -> None:
    assert trigger_words(CronTrigger.parse(expression)) == words


def test_intervals_and_one_offs_in_words() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    assert trigger_words(IntervalTrigger.create(timedelta(seconds=30), zone)) == "every 30 seconds"
    assert trigger_words(IntervalTrigger.create(timedelta(hours=1), zone)) == "every hour"
    assert trigger_words(IntervalTrigger.create(timedelta(minutes=90), zone)) == "every 1 hour 30 minutes"
    assert trigger_words(OneOffTrigger(datetime(2031, 12, 25, 10, 0))) == "once at 2031-12-25 10:00"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.85, "850ms"),
        (1.5, "1.5s"),
        (12.3, "12s"),
        (245, "4m05s"),
        (600, "10m"),
        (7800, "2h10m"),
        (None, "–"),
    ],
)
def test_short_duration(seconds: float | None, text: str) -> None:
    assert short_duration(seconds) == text


def test_times_on_the_schedules_wall_clock() -> None:
    now = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    assert local_time("2026-11-22T05:30:00+00:00", "Asia/Shanghai", now) == "13:30 CST"
    assert local_time(datetime(2026, 11, 23, 18, 0, tzinfo=UTC), "Asia/Shanghai", now) == "Tue 02:00 CST"
    assert local_time(1798761600, "Asia/Shanghai", now) == "2027-01-01 08:00 CST"
    assert local_time(None, "Asia/Shanghai", now) == "–"
    assert relative(now + timedelta(minutes=5), now) == "in 5m"
    assert relative((now - timedelta(seconds=42)).isoformat(), now) == "42s ago"
