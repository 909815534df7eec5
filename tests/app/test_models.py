"""Models: aware UTC datetimes in and out, enums stored as their values, constraints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

import app.models as models
from app.extensions import db
from app.models import (
    DailyEnvStat,
    Heartbeat,
    Notification,
    NotificationKind,
    Rental,
    RentalStatus,
    Room,
    SensorReading,
    Setpoint,
    Stage,
    StageStatus,
    Task,
    TaskStatus,
    User,
)

SHANGHAI = timezone(timedelta(hours=8))
NOW = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)


def make_user(name: str = "alice", *, is_admin: bool = False) -> User:
    """A committed user."""
    user = User(username=name, email=f"{name}@example.com", is_admin=is_admin)
    db.session.add(user)
    db.session.commit()
    return user


def test_every_model_is_exported_and_mapped(app: Flask) -> None:
    tables = {
        "users", "tasks", "notifications", "stages", "rentals", "rooms",
        "sensor_readings", "setpoints", "daily_env_stats", "heartbeats",
    }  # fmt: skip
    assert set(db.metadata.tables) >= tables
    exported = {getattr(models, name) for name in models.__all__}
    for table in tables:
        mapper = next(m for m in db.Model.registry.mappers if m.local_table.name == table)
        assert mapper.class_ in exported


def test_aware_datetime_round_trips_as_utc(app: Flask) -> None:
    local = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=SHANGHAI)
    stage = Stage(name="Build", start_date=local, end_date=local + timedelta(days=3))
    db.session.add(stage)
    db.session.commit()
    db.session.expire_all()

    loaded = db.session.get(Stage, stage.id)
    assert loaded is not None
    assert loaded.start_date == local
    assert loaded.start_date.tzinfo is UTC
    assert loaded.start_date.hour == 2  # 10:30 in UTC+8
    assert loaded.updated_at.tzinfo is UTC  # the default, now_utc()


def test_naive_datetime_is_refused(app: Flask) -> None:
    db.session.add(Stage(name="Naive", start_date=datetime(2026, 1, 1), end_date=NOW))
    with pytest.raises(StatementError) as raised:
        db.session.commit()
    assert isinstance(raised.value.orig, ValueError)
    assert "naive" in str(raised.value.orig)
    db.session.rollback()
    assert db.session.scalars(select(Stage)).all() == []


def test_naive_datetime_is_refused_in_a_where_clause(app: Flask) -> None:
    with pytest.raises(StatementError):
        db.session.execute(select(Stage).where(Stage.end_date <= datetime(2026, 1, 1)))


def test_task_defaults(app: Flask) -> None:
    user = make_user()
    task = Task(title="Audit backups", handler_id=user.id)
    db.session.add(task)
    db.session.commit()
    db.session.expire_all()

    assert task.status is TaskStatus.NEW
    assert task.is_periodic is False
    assert task.period_days == 7
    assert task.progress == 0
    assert task.time_progress == 0.0
    assert task.created_at.tzinfo is UTC
    assert task.expected_start is None
    assert task.handler.username == "alice"


def test_status_is_stored_as_its_value_and_read_back_as_the_enum(app: Flask) -> None:
    user = make_user()
    db.session.add(Task(title="t", handler_id=user.id, status="processing"))
    db.session.add(Rental(item_name="Drone", customer="Li Wei", ship_at=NOW))
    db.session.commit()

    raw = db.session.execute(text("SELECT status FROM tasks")).scalar_one()
    assert raw == "processing"
    db.session.expire_all()
    task = db.session.scalars(select(Task)).one()
    assert task.status is TaskStatus.PROCESSING
    assert db.session.scalars(select(Rental.status)).one() is RentalStatus.PENDING
    assert db.session.scalars(select(Task).where(Task.status == "processing")).one() is task


def test_unknown_status_is_refused(app: Flask) -> None:
    user = make_user()
    db.session.add(Task(title="t", handler_id=user.id, status="archived"))
    with pytest.raises(StatementError) as raised:
        db.session.commit()
    assert isinstance(raised.value.orig, LookupError)
    db.session.rollback()


def test_notification_round_trip(app: Flask) -> None:
    user = make_user()
    note = Notification(
        user_id=user.id, kind=NotificationKind.TASK_WARNING, title="5 % left", body="Hurry."
    )
    db.session.add(note)
    db.session.commit()
    note.is_read, note.read_at = True, NOW
    db.session.commit()
    db.session.expire_all()

    assert note.kind == "task_warning"
    assert note.is_read is True
    assert note.read_at == NOW
    assert note.user.id == user.id


def test_environment_unique_constraints(app: Flask) -> None:
    room = Room(name="Nursery")
    db.session.add(room)
    db.session.commit()
    db.session.add_all(
        [
            Setpoint(room_id=room.id, metric="co2", min_value=None, max_value=1200.0),
            SensorReading(room_id=room.id, metric="co2", value=900.0, recorded_at=NOW),
            DailyEnvStat(
                room_id=room.id, metric="co2", day=date(2026, 1, 4),
                min_value=700.0, max_value=1300.0, avg_value=900.0, count=288,
            ),
        ]
    )  # fmt: skip
    db.session.commit()
    assert db.session.scalars(select(Setpoint.min_value)).one() is None
    assert db.session.scalars(select(SensorReading.recorded_at)).one() == NOW

    db.session.add(Setpoint(room_id=room.id, metric="co2", min_value=400.0, max_value=1000.0))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

    db.session.add(
        DailyEnvStat(
            room_id=room.id, metric="co2", day=date(2026, 1, 4),
            min_value=1.0, max_value=1.0, avg_value=1.0, count=1,
        )
    )  # fmt: skip
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_heartbeat_keyed_by_name(app: Flask) -> None:
    db.session.add(Heartbeat(name=models.HEALTH_CHECK_HEARTBEAT, beat_at=NOW, job_id="j1"))
    db.session.commit()
    beat = db.session.get(Heartbeat, "health_check")
    assert beat is not None
    beat.beat_at = NOW + timedelta(seconds=30)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Heartbeat, "health_check").beat_at == NOW + timedelta(seconds=30)


def test_stage_status_enum_values() -> None:
    assert [s.value for s in StageStatus] == ["pending", "active", "completed"]
    assert [s.value for s in TaskStatus] == ["new", "processing", "completed", "closed"]
    assert [s.value for s in RentalStatus] == ["pending", "shipping", "shipped", "failed"]
