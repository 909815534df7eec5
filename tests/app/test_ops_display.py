"""Triggers in words, short durations and wall-clock times as the pages and the CLI show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.ops.display import cron_words, local_time, relative, short_duration, trigger_words
from cronwork.timing import CronTrigger, IntervalTrigger, OneOffTrigger, format_duration


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("0 2 * * *", "at 02:00"),
        ("0 9 * * 1-5", "at 09:00, Monday through Friday"),
        ("0 9 * * MON-FRI", "at 09:00, Monday through Friday"),
        ("30 4 15 * *", "at 04:30, on day 15 of the month"),
        ("*/10 * * * 1-5", "every 10 minutes, Monday through Friday"),
        # Six fields: cron-descriptor reads the first as seconds, as Cronwork does, and a zero
        # second reads like the five-field form.
        ("20 3 1 * * *", "at 01:03:20"),
        ("0 0 2 * * *", "at 02:00"),
        ("*/10 * * * * *", "every 10 seconds"),
    ],
)
def test_cron_in_words_by_cron_descriptor(expression: str, words: str) -> None:
    assert trigger_words(CronTrigger.parse(expression)) == words


def test_a_cron_text_cron_descriptor_refuses_is_shown_as_the_expression() -> None:
    assert cron_words("not a cron") == "cron not a cron"


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
        (245, "4m5s"),
        (600, "10m"),
        (7805, "2h10m"),
        (273600, "3d4h"),
        (-42, "42s"),
        (None, "–"),
    ],
)
def test_short_duration_is_format_duration_with_two_units(seconds: float | None, text: str) -> None:
    assert short_duration(seconds) == text


def test_one_formatter_for_the_file_the_pages_and_words() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"  # parse_duration's inverse
    assert format_duration(7805, largest=2) == "2h10m"
    assert format_duration(5400, words=True) == "1 hour 30 minutes"
    assert format_duration(0.25, fraction=True) == "250ms"
    assert short_duration(42.7, whole=True) == "42s"  # whole seconds, truncated


def test_times_on_the_schedules_wall_clock() -> None:
    now = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    assert local_time("2026-11-22T05:30:00+00:00", "Asia/Shanghai", now) == "13:30 CST"
    assert local_time(datetime(2026, 11, 23, 18, 0, tzinfo=UTC), "Asia/Shanghai", now) == "Tue 02:00 CST"
    assert local_time(1798761600, "Asia/Shanghai", now) == "2027-01-01 08:00 CST"
    assert local_time(None, "Asia/Shanghai", now) == "–"
    assert relative(now + timedelta(minutes=5), now) == "in 5m"
    assert relative((now - timedelta(seconds=42)).isoformat(), now) == "42s ago"
