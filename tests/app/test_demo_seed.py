"""`flask demo seed` and `flask db upgrade`: every kind of row, reproducible, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from app.cli.demo import demo_cli
from app.demo.seed import SEEDED_MODELS
from app.extensions import db
from app.models import (
    Notification,
    Rental,
    RentalStatus,
    SensorReading,
    Setpoint,
    Stage,
    StageStatus,
    Task,
    TaskStatus,
    User,
)
from app.services.stages import update_stage_status

NOW = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
SMALL = ["--tasks", "80", "--rentals", "30", "--rooms", "2", "--readings-per-hour", "4"]


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """A CLI runner with the demo group registered on the test app."""
    app.cli.add_command(demo_cli)
    return app.test_cli_runner()


def seed(runner: FlaskCliRunner, *args: str) -> Result:
    result = runner.invoke(args=["demo", "seed", *SMALL, "--now", NOW.isoformat(), *args])
    db.session.remove()  # the next queries see what the command committed
    return result


def count(model: Any, *where: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def dump() -> dict[str, list[tuple[Any, ...]]]:
    """Every seeded row, table by table, in id order."""
    return {
        model.__tablename__: [tuple(row) for row in db.session.execute(
            select(model.__table__).order_by(*model.__table__.primary_key.columns)
        )]
        for model in SEEDED_MODELS
    }  # fmt: skip


def test_seed_creates_every_kind_of_row(runner: FlaskCliRunner) -> None:
    result = seed(runner)
    assert result.exit_code == 0, result.output
    assert "80 tasks" in result.output
    assert "30 rentals" in result.output

    for model in SEEDED_MODELS:
        assert count(model) > 0, model.__tablename__
    assert count(User, User.is_admin) == 1
    assert {s for s in db.session.scalars(select(Task.status).distinct())} == set(TaskStatus)
    assert {s for s in db.session.scalars(select(Rental.status).distinct())} == set(RentalStatus)
    assert {s for s in db.session.scalars(select(Stage.status).distinct())} == set(StageStatus)
    assert count(Notification, Notification.is_read.is_(False)) > 0
    assert count(Notification, Notification.created_at < NOW - timedelta(days=180)) > 0


def test_seed_gives_every_job_work(runner: FlaskCliRunner) -> None:
    assert seed(runner).exit_code == 0
    processing = Task.status == TaskStatus.PROCESSING
    soon = NOW + timedelta(minutes=15)

    # check_task_warnings: time nearly used up, progress lagging, at each level
    for level in (80, 90, 95):
        assert count(Task, processing, Task.time_progress >= level, Task.progress < 60) > 0
    # reset_periodic_tasks: periodic tasks finished more than their period ago
    due = [
        t for t in db.session.scalars(select(Task).where(Task.is_periodic))
        if t.status in (TaskStatus.COMPLETED, TaskStatus.CLOSED)
        and (t.closed_at or t.completed_at) <= NOW - timedelta(days=t.period_days)
    ]  # fmt: skip
    assert due
    # cleanup_old_data: tasks closed more than 90 days ago
    assert count(Task, Task.closed_at < NOW - timedelta(days=90)) > 0
    # update_stage_status: due now, and more in the next minutes
    assert count(Stage, Stage.status == StageStatus.PENDING, Stage.start_date > NOW,
                 Stage.start_date <= soon) > 0  # fmt: skip
    assert count(Stage, Stage.status == StageStatus.ACTIVE, Stage.end_date > NOW,
                 Stage.end_date <= soon) > 0  # fmt: skip
    summary = update_stage_status(NOW)
    assert summary["activated"] > 0
    assert summary["completed"] > 0
    # process_scheduled_shipments: due now and in the next minutes
    pending = Rental.status == RentalStatus.PENDING
    assert count(Rental, pending, Rental.ship_at <= NOW) > 0
    assert count(Rental, pending, Rental.ship_at > NOW, Rental.ship_at <= soon) > 0
    # daily_env_stats: readings over the whole previous day
    first, last = db.session.execute(
        select(func.min(SensorReading.recorded_at), func.max(SensorReading.recorded_at))
    ).one()
    assert first <= NOW - timedelta(hours=25)
    assert last == NOW
    # hourly_setpoint_monitoring: readings of the last hour outside their setpoint
    outside = (
        select(func.count())
        .select_from(SensorReading)
        .join(Setpoint, (Setpoint.room_id == SensorReading.room_id)
              & (Setpoint.metric == SensorReading.metric))
        .where(SensorReading.recorded_at > NOW - timedelta(hours=1))
        .where((SensorReading.value < Setpoint.min_value)
               | (SensorReading.value > Setpoint.max_value))
    )  # fmt: skip
    assert (db.session.scalar(outside) or 0) > 0


def test_seed_is_reproducible(runner: FlaskCliRunner) -> None:
    assert seed(runner, "--seed", "7").exit_code == 0
    first = dump()
    assert seed(runner, "--seed", "7", "--reset").exit_code == 0
    assert dump() == first
    assert seed(runner, "--seed", "8", "--reset").exit_code == 0
    assert dump() != first


def test_seed_refuses_a_non_empty_database(runner: FlaskCliRunner) -> None:
    assert seed(runner).exit_code == 0
    before = dump()

    result = seed(runner)
    assert result.exit_code == 1
    assert "not empty" in result.output
    assert "--reset" in result.output
    assert dump() == before

    result = seed(runner, "--if-empty")
    assert result.exit_code == 0
    assert "not seeding" in result.output
    assert dump() == before


def test_seed_rejects_contradictory_or_naive_options(runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["demo", "seed", "--reset", "--if-empty"]).exit_code == 2
    result = runner.invoke(args=["demo", "seed", "--now", "2026-01-05T09:00:00"])
    assert result.exit_code == 2
    assert "offset" in result.output
    assert count(Task) == 0


def test_seed_with_zero_counts_still_creates_users(runner: FlaskCliRunner) -> None:
    result = seed(runner, "--tasks", "0", "--rentals", "0", "--rooms", "0", "--stages", "0")
    assert result.exit_code == 0, result.output
    assert count(User) == 3
    assert count(Task) == 0
    assert count(SensorReading) == 0


def test_db_upgrade_is_idempotent(runner: FlaskCliRunner) -> None:
    assert seed(runner).exit_code == 0
    before = dump()

    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    assert dump() == before
