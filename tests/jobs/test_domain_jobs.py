"""The domain job entry points: importable by dotted path, take the tick, return summaries."""

from __future__ import annotations

import importlib
import inspect
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis import Redis

from app.extensions import db
from app.models import Rental, RentalStatus, Room, SensorReading, Task, TaskStatus, User
from cronwork.keys import Keys
from jobs import environment, reports, shipments, tasks
from jobs.runtime import is_allowed

ENTRY_POINTS = [
    "jobs.tasks.reset_periodic_tasks",
    "jobs.tasks.check_task_warnings",
    "jobs.tasks.update_time_progress",
    "jobs.tasks.cleanup_old_data",
    "jobs.shipments.process_scheduled_shipments",
    "jobs.environment.daily_env_stats",
    "jobs.environment.hourly_setpoint_monitoring",
    "jobs.reports.daily_report",
]


@pytest.mark.parametrize("path", ENTRY_POINTS)
def test_entry_points_resolve_and_take_the_tick(path: str) -> None:
    module, _, name = path.rpartition(".")
    func = getattr(importlib.import_module(module), name)
    assert is_allowed(path)
    assert inspect.signature(func).parameters["scheduled_for"].default is None


@pytest.fixture
def people(app: Flask) -> int:
    admin = User(username="admin", email="a@x", is_admin=True)
    db.session.add(admin)
    db.session.commit()
    return admin.id


def test_task_jobs_return_their_summaries(people: int, redis: Redis) -> None:
    now = datetime.now(UTC)
    db.session.add(
        Task(
            title="late",
            handler_id=people,
            status=TaskStatus.PROCESSING,
            expected_start=now - timedelta(days=9),
            expected_end=now + timedelta(days=1),
        )
    )
    db.session.commit()
    tick = now.replace(minute=0, second=0, microsecond=0).isoformat()
    assert tasks.update_time_progress(tick) == {"updated": 1}
    assert tasks.check_task_warnings(tick) == {"refreshed": 1, "late": 1, "notified": 1, "already_sent": 0}
    assert tasks.check_task_warnings()["already_sent"] == 1
    assert tasks.reset_periodic_tasks(tick) == {"reset": 0}
    assert tasks.cleanup_old_data(tick) == {"tasks": 0, "notifications": 0, "ledger_entries": 0}


def test_shipments_job_uses_the_local_carrier_by_default(people: int) -> None:
    db.session.add(Rental(item_name="Tent", customer="Ana", ship_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.session.commit()
    summary = shipments.process_scheduled_shipments(datetime.now(UTC).isoformat())
    assert summary == {"total": 1, "success": 1, "failed": 0, "retrying": 0, "retried": 0, "skipped": 0}
    assert db.session.scalar(db.select(Rental.status)) is RentalStatus.SHIPPED


def test_environment_jobs_take_their_window_from_the_tick(app: Flask, people: int, redis: Redis) -> None:
    app.config["APP_TIMEZONE"] = "Asia/Shanghai"
    room = Room(name="Lab")
    db.session.add(room)
    db.session.flush()
    # 2026-01-05 00:30 in Shanghai, 2026-01-04 16:30 UTC.
    db.session.add(
        SensorReading(
            room_id=room.id,
            metric="humidity",
            value=50.0,
            recorded_at=datetime(2026, 1, 4, 16, 30, tzinfo=UTC),
        )
    )
    db.session.commit()
    # A late run (requeued days later) still covers the day of its tick.
    assert environment.daily_env_stats("2026-01-06T01:03:20+08:00") == {"day": "2026-01-05", "stats": 1}
    hourly = environment.hourly_setpoint_monitoring("2026-01-05T01:05:00+08:00")
    assert hourly == {"out_of_range": 0, "alerts": 0, "already_sent": 0}


def test_daily_report_job(app: Flask, people: int, redis: Redis) -> None:
    redis.hset(Keys(app.config["CRONWORK_PREFIX"]).definitions, "health_check", "{}")
    summary = reports.daily_report("2026-01-06T09:00:00+08:00")
    assert summary["day"] == "2026-01-05"
    assert (summary["schedules"], summary["admins"]) == (1, 1)


def test_every_job_has_work_on_the_demo_seed(app: Flask, redis: Redis) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    result = app.test_cli_runner().invoke(
        args=["demo", "seed", "--tasks", "300", "--rentals", "60", "--rooms", "2", "--now", now.isoformat()]
    )
    assert result.exit_code == 0, result.output
    db.session.remove()
    redis.hset(Keys(app.config["CRONWORK_PREFIX"]).definitions, "check_task_warnings", "{}")
    tick = now.isoformat()
    assert tasks.update_time_progress(tick)["updated"] > 0
    assert tasks.check_task_warnings(tick)["notified"] > 0
    assert tasks.reset_periodic_tasks(tick)["reset"] > 0
    cleaned = tasks.cleanup_old_data(tick)
    assert cleaned["tasks"] > 0 and cleaned["notifications"] > 0
    shipped = shipments.process_scheduled_shipments(tick)
    assert shipped["success"] > 0 and shipped["failed"] == 0
    assert environment.daily_env_stats(tick)["stats"] > 0
    assert environment.hourly_setpoint_monitoring(tick)["out_of_range"] >= 0  # random excursions
    assert reports.daily_report(tick)["admins"] == 1
