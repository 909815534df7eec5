"""daily_env_stats and hourly_setpoint_monitoring: local-day windows, upserts, deduplicated alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import DailyEnvStat, Notification, NotificationKind, Room, SensorReading, Setpoint, User
from app.services.environment import daily_env_stats, hourly_setpoint_monitoring
from app.services.timewindows import previous_day, previous_hour

pytestmark = pytest.mark.both_databases  # dialect-specific SQL: prove it on both

SHANGHAI, UTC_ZONE = ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC")
# The daily_env_stats tick of 2026-01-06 01:03:20 in Shanghai is still 2026-01-05 in UTC.
DAILY_TICK = datetime(2026, 1, 6, 1, 3, 20, tzinfo=SHANGHAI).astimezone(UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture
def room(app: Flask) -> int:
    r = Room(name="Grow Room A")
    db.session.add_all([r, User(username="admin", email="a@x", is_admin=True), User(username="u", email="u@x")])
    db.session.flush()
    db.session.add_all(
        [
            Setpoint(room_id=r.id, metric="temperature", min_value=18.0, max_value=26.0),
            Setpoint(room_id=r.id, metric="co2", min_value=None, max_value=1200.0),
        ]
    )
    db.session.commit()
    return r.id


def add_readings(room: int, metric: str, *points: tuple[datetime, float]) -> None:
    db.session.add_all(
        SensorReading(room_id=room, metric=metric, value=value, recorded_at=at) for at, value in points
    )
    db.session.commit()


def stats() -> list[tuple[Any, ...]]:
    db.session.expire_all()
    rows = db.session.execute(
        select(
            DailyEnvStat.metric,
            DailyEnvStat.day,
            DailyEnvStat.min_value,
            DailyEnvStat.max_value,
            DailyEnvStat.avg_value,
            DailyEnvStat.count,
        ).order_by(DailyEnvStat.metric)
    )
    return [tuple(r) for r in rows]


def test_previous_day_follows_shanghai_midnight_not_utc(room: int) -> None:
    start = datetime(2026, 1, 5, tzinfo=SHANGHAI).astimezone(UTC)  # 2026-01-04 16:00 UTC
    end = start + timedelta(days=1)
    add_readings(
        room,
        "temperature",
        (start - SECOND, 100.0),  # 2026-01-04 23:59:59 in Shanghai: the day before
        (start, 20.0),
        (end - SECOND, 22.0),
        (end, 100.0),  # 2026-01-06 00:00:00 in Shanghai: today
    )
    assert daily_env_stats(previous_day(DAILY_TICK, SHANGHAI)) == {"day": "2026-01-05", "stats": 1}
    assert stats() == [("temperature", date(2026, 1, 5), 20.0, 22.0, 21.0, 2)]


def test_same_tick_in_utc_covers_the_utc_day_before(room: int) -> None:
    utc_day_start = datetime(2026, 1, 4, tzinfo=UTC)
    add_readings(room, "co2", (utc_day_start, 700.0), (utc_day_start + timedelta(hours=23), 900.0))
    assert daily_env_stats(previous_day(DAILY_TICK, UTC_ZONE)) == {"day": "2026-01-04", "stats": 1}
    assert stats() == [("co2", date(2026, 1, 4), 700.0, 900.0, 800.0, 2)]


def test_rerun_rewrites_instead_of_duplicating(room: int) -> None:
    day = previous_day(DAILY_TICK, SHANGHAI)
    add_readings(room, "temperature", (day.start, 20.0))
    add_readings(room, "co2", (day.start, 500.0))
    daily_env_stats(day)
    add_readings(room, "temperature", (day.start + timedelta(hours=5), 24.0))  # a late reading
    assert daily_env_stats(day) == {"day": "2026-01-05", "stats": 2}
    assert stats() == [
        ("co2", date(2026, 1, 5), 500.0, 500.0, 500.0, 1),
        ("temperature", date(2026, 1, 5), 20.0, 24.0, 22.0, 2),
    ]


HOURLY_TICK = datetime(2026, 1, 6, 10, 5, tzinfo=SHANGHAI).astimezone(UTC)  # hh:05
HOUR = previous_hour(HOURLY_TICK, SHANGHAI)  # 09:00–10:00 Shanghai


def alerts() -> list[tuple[int, str]]:
    db.session.expire_all()
    rows = db.session.execute(
        select(Notification.user_id, Notification.title).where(
            Notification.kind == NotificationKind.SETPOINT_ALERT
        )
    )
    return [tuple(r) for r in rows]


def test_one_alert_per_room_metric_and_hour(room: int, redis: Redis) -> None:
    assert HOUR.start == datetime(2026, 1, 6, 9, tzinfo=SHANGHAI)
    add_readings(
        room,
        "temperature",
        (HOUR.start - SECOND, 40.0),  # the hour before: not this run's
        (HOUR.start, 30.0),
        (HOUR.start + timedelta(minutes=30), 17.0),
        (HOUR.start + timedelta(minutes=40), 22.0),
        (HOUR.end, 40.0),  # this hour: the next run's
    )
    add_readings(room, "co2", (HOUR.start, 10.0))  # no lower bound: not an excursion
    summary = hourly_setpoint_monitoring(HOUR, redis)
    assert summary == {"out_of_range": 1, "alerts": 1, "already_sent": 0}
    admin = db.session.scalar(select(User.id).where(User.is_admin.is_(True)))
    assert alerts() == [(admin, "Grow Room A: temperature outside its setpoint")]
    body = db.session.scalar(select(Notification.body))
    assert "2 reading(s)" in body and "lowest 17, highest 30" in body
    key = f"setpoint_alert:{room}:temperature:{int(HOUR.start.timestamp())}"
    assert redis.ttl(key) > 86400
    assert hourly_setpoint_monitoring(HOUR, redis) == {"out_of_range": 1, "alerts": 0, "already_sent": 1}
    assert len(alerts()) == 1


def test_upper_bound_only_setpoint_alerts_above(room: int, redis: Redis) -> None:
    add_readings(room, "co2", (HOUR.start + SECOND, 1200.0), (HOUR.start + 2 * SECOND, 1200.5))
    assert hourly_setpoint_monitoring(HOUR, redis)["alerts"] == 1
    assert "lowest 1200.5, highest 1200.5" in db.session.scalar(select(Notification.body))


def test_alert_key_released_when_the_commit_fails(room: int, redis: Redis) -> None:
    add_readings(room, "temperature", (HOUR.start, 30.0))

    def fail(session: Any) -> None:
        raise OperationalError("INSERT INTO notifications", {}, Exception("database is locked"))

    event.listen(db.session, "before_commit", fail)
    try:
        with pytest.raises(OperationalError):
            hourly_setpoint_monitoring(HOUR, redis)
    finally:
        event.remove(db.session, "before_commit", fail)
    db.session.rollback()
    assert redis.keys("setpoint_alert:*") == []
    assert hourly_setpoint_monitoring(HOUR, redis)["alerts"] == 1
