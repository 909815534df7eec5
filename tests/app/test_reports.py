"""daily_report: yesterday's ledger records per schedule (APP_TIMEZONE), once, to every admin."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Notification, NotificationKind, User
from app.services.reports import daily_report, p95, report_key, schedule_day
from app.services.timewindows import previous_day
from cronwork.keys import Keys
from cronwork.ledger import Ledger

pytestmark = pytest.mark.both_databases  # dialect-specific SQL: prove it on both

SHANGHAI = ZoneInfo("Asia/Shanghai")
KEYS = Keys("cronwork")
TICK = datetime(2026, 1, 6, 9, 0, tzinfo=SHANGHAI)  # Tuesday 09:00: reports Monday 2026-01-05
DAY = previous_day(TICK, SHANGHAI)


@pytest.fixture
def admins(app: Flask) -> list[int]:
    users = [User(username=n, email=f"{n}@x", is_admin=n != "user") for n in ("root", "ops", "user")]
    db.session.add_all(users)
    db.session.commit()
    return [u.id for u in users if u.is_admin]


def record(redis: Redis, name: str, at: datetime, state: str, duration: float | None = None) -> None:
    fields: dict[str, Any] = {"state": state}
    if duration is not None:
        fields["duration"] = duration
    Ledger(redis, KEYS).put(name, int(at.timestamp()), fields)


def register(redis: Redis, *names: str) -> None:
    redis.hset(KEYS.definitions, mapping={n: "{}" for n in names})


def test_p95_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([3.0]) == 3.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([1.0, 2.0, 10.0]) == 10.0


def test_report_counts_yesterdays_local_day(admins: list[int], redis: Redis) -> None:
    register(redis, "check_task_warnings", "daily_env_stats", "idle")
    start = datetime(2026, 1, 5, tzinfo=SHANGHAI)
    record(redis, "check_task_warnings", start - timedelta(seconds=1), "failed", 1.0)  # Sunday
    for hour in range(20):
        record(redis, "check_task_warnings", start + timedelta(hours=hour), "succeeded", 0.1 * (hour + 1))
    record(redis, "check_task_warnings", start + timedelta(hours=20), "timed_out", 600.0)
    record(redis, "check_task_warnings", start + timedelta(hours=21), "missed")
    record(redis, "check_task_warnings", start + timedelta(hours=22), "skipped_overlap", 0.01)
    record(redis, "check_task_warnings", start + timedelta(hours=24), "failed", 1.0)  # Tuesday
    record(redis, "daily_env_stats", start + timedelta(hours=1, seconds=200), "succeeded", 2.5)
    record(redis, "not_registered", start, "failed", 1.0)

    summary = daily_report(redis, KEYS, DAY)
    assert summary == {
        "day": "2026-01-05",
        "schedules": 3,
        "runs": 22,
        "failures": 1,
        "misses": 1,
        "admins": 2,
        "already_sent": False,
    }
    notes = db.session.execute(
        select(Notification.user_id, Notification.kind, Notification.title, Notification.body)
    ).all()
    assert sorted(n.user_id for n in notes) == admins
    assert {n.kind for n in notes} == {NotificationKind.DAILY_REPORT}
    assert notes[0].title == "Daily report 2026-01-05: 22 runs, 1 failures, 1 misses"
    assert notes[0].body.splitlines() == [
        "check_task_warnings: 21 runs, 1 failures, 1 misses, 1 skipped, p95 2.000 s",
        "daily_env_stats: 1 runs, 0 failures, 0 misses, 0 skipped, p95 2.500 s",
        "idle: 0 runs, 0 failures, 0 misses, 0 skipped, p95 —",
    ]


def test_report_is_sent_once_per_day(admins: list[int], redis: Redis) -> None:
    register(redis, "x")
    assert daily_report(redis, KEYS, DAY)["already_sent"] is False
    again = daily_report(redis, KEYS, DAY)
    assert (again["already_sent"], again["admins"]) == (True, 0)
    assert len(db.session.scalars(select(Notification.id)).all()) == 2


def test_report_key_released_when_the_commit_fails(admins: list[int], redis: Redis) -> None:
    register(redis, "x")

    def fail(session: Any) -> None:
        raise OperationalError("INSERT INTO notifications", {}, Exception("disk full"))

    event.listen(db.session, "before_commit", fail)
    try:
        with pytest.raises(OperationalError):
            daily_report(redis, KEYS, DAY)
    finally:
        event.remove(db.session, "before_commit", fail)
    db.session.rollback()
    assert not redis.exists(report_key(KEYS, "2026-01-05"))
    assert daily_report(redis, KEYS, DAY)["admins"] == 2


def test_report_says_when_the_history_trim_cut_the_day(admins: list[int], redis: Redis) -> None:
    register(redis, "health_check")
    start = datetime(2026, 1, 5, tzinfo=SHANGHAI)
    ledger = Ledger(redis, KEYS)
    for i in range(10):  # every 30 s
        at = start + timedelta(seconds=30 * i)
        ledger.put("health_check", int(at.timestamp()), {"state": "succeeded", "duration": 0.01})
    redis.hset(KEYS.run_stats, "health_check:trimmed_through", int((start - timedelta(hours=1)).timestamp()))
    assert not schedule_day(redis, KEYS, "health_check", DAY).capped  # trimmed before the day only
    # As cronwork.dispatch records a trim that reached into the day.
    redis.hset(KEYS.run_stats, "health_check:trimmed_through", int((start + timedelta(seconds=30)).timestamp()))
    assert schedule_day(redis, KEYS, "health_check", DAY).capped
    assert daily_report(redis, KEYS, DAY)["runs"] == 10
    body = db.session.scalar(select(Notification.body))
    assert body.endswith("(older ticks of the day are no longer kept: see keep_runs)")
