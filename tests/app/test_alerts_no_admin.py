"""Alerts always reach someone (issue 14, point 8): with no admin user an alert is not written
to nobody while its dedup key says "sent": it waits in Redis, logged and counted in /metrics,
and `flask users create-admin` delivers it."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, NotificationKind, Room, SensorReading, Setpoint, User
from app.services.alerts import Alert, flush_pending, pending_count
from app.services.environment import hourly_setpoint_monitoring
from app.services.reports import daily_report
from app.services.timewindows import previous_day, previous_hour
from cronwork.keys import Keys
from jobs.alerts import on_final_failure

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICK = datetime(2026, 1, 6, 10, 5, tzinfo=SHANGHAI)
HOUR, DAY = previous_hour(TICK, SHANGHAI), previous_day(TICK, SHANGHAI)
KEYS = Keys("cronwork")


def notifications() -> list[tuple[str, str]]:
    db.session.expire_all()
    rows = db.session.execute(select(Notification.kind, Notification.title).order_by(Notification.id))
    return [(kind, title) for kind, title in rows]


def create_admin(app: Flask) -> str:
    done = app.test_cli_runner().invoke(args=["users", "create-admin", "ops", "--email", "ops@example.com"])
    assert done.exit_code == 0, done.output
    return done.output


def test_a_setpoint_alert_with_no_admin_waits_in_redis_for_the_first_admin(
    app: Flask, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    room = Room(name="Grow Room A")
    db.session.add(room)
    db.session.flush()
    db.session.add_all(
        [
            Setpoint(room_id=room.id, metric="temperature", min_value=18.0, max_value=26.0),
            SensorReading(room_id=room.id, metric="temperature", value=31.0, recorded_at=HOUR.start),
        ]
    )
    db.session.commit()
    with caplog.at_level(logging.WARNING, logger="app.services.alerts"):
        assert hourly_setpoint_monitoring(HOUR, redis)["alerts"] == 1
    assert notifications() == []
    assert pending_count(redis, KEYS) == 1
    assert "alert kept until it can be delivered (no admin user): Grow Room A" in caplog.text
    scrape = app.test_client().get("/metrics").get_data(as_text=True)
    assert "cronwork_alerts_pending 1.0" in scrape

    assert create_admin(app) == "admin ops ready; 1 waiting alert(s) delivered\n"
    assert notifications() == [(NotificationKind.SETPOINT_ALERT, "Grow Room A: temperature outside its setpoint")]
    assert pending_count(redis, KEYS) == 0
    # The dedup key still holds: the next run does not alert again.
    assert hourly_setpoint_monitoring(HOUR, redis) == {"out_of_range": 1, "alerts": 0, "already_sent": 1}
    assert len(notifications()) == 1
    assert "already an admin" in app.test_cli_runner().invoke(
        args=["users", "create-admin", "ops", "--email", "ops@example.com"]
    ).output


def test_failure_alerts_and_reports_wait_too_and_arrive_in_order(app: Flask, redis: Redis) -> None:
    on_final_failure(app, redis, KEYS, "nightly", "cronwork-nightly-1", "failed", "boom", 0)
    assert daily_report(redis, KEYS, DAY)["admins"] == 0
    assert notifications() == [] and pending_count(redis, KEYS) == 2
    assert create_admin(app).endswith("2 waiting alert(s) delivered\n")
    assert [kind for kind, _ in notifications()] == [NotificationKind.JOB_FAILURE, NotificationKind.DAILY_REPORT]


def test_garbage_kept_among_the_alerts_is_dropped_and_the_rest_delivered(app: Flask, redis: Redis) -> None:
    good = Alert(NotificationKind.JOB_FAILURE, "Schedule x: run failed", "boom")
    redis.rpush(KEYS.pending_alerts, b"\x80\x04garbage", good.encode(), b'{"title": 1}', b"[]")
    db.session.add(User(username="ops", email="ops@example.com", is_admin=True))
    db.session.commit()
    assert flush_pending() == 1
    assert notifications() == [(NotificationKind.JOB_FAILURE, "Schedule x: run failed")]
    assert pending_count(redis, KEYS) == 0


def test_an_alert_kept_before_the_kind_was_stored_is_a_job_failure() -> None:
    assert Alert.decode(b'{"title": "t", "body": "b"}') == Alert(NotificationKind.JOB_FAILURE, "t", "b")
    with pytest.raises(ValueError):
        Alert.decode(b'{"title": "t"}')
