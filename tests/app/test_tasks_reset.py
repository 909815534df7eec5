"""reset_periodic_tasks: period_days boundaries, what a reset clears, one notification each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, NotificationKind, Task, TaskStatus, User
from app.services.tasks import reset_periodic_tasks

pytestmark = pytest.mark.both_databases  # dialect-specific SQL: prove it on both

NOW = datetime(2026, 1, 5, 18, 0, 0, tzinfo=UTC)
DAY, SECOND = timedelta(days=1), timedelta(seconds=1)


@pytest.fixture
def handler(app: Flask) -> int:
    user = User(username="bob", email="bob@example.com")
    db.session.add(user)
    db.session.commit()
    return user.id


def add_done_task(
    handler: int,
    finished_ago: timedelta,
    status: TaskStatus = TaskStatus.COMPLETED,
    period_days: int = 7,
    periodic: bool = True,
) -> int:
    """A finished task: completed `finished_ago`, or closed then (completed a day earlier)."""
    finished = NOW - finished_ago
    closed = status is TaskStatus.CLOSED
    task = Task(
        title="Water the plants",
        handler_id=handler,
        status=status,
        is_periodic=periodic,
        period_days=period_days,
        progress=100,
        time_progress=100.0,
        expected_start=finished - 3 * DAY,
        expected_end=finished,
        actual_start=finished - 3 * DAY,
        actual_end=finished,
        completed_at=finished - DAY if closed else finished,
        closed_at=finished if closed else None,
    )
    db.session.add(task)
    db.session.commit()
    return task.id


def task(task_id: int) -> Task:
    db.session.expire_all()
    return db.session.get(Task, task_id)


@pytest.mark.parametrize(
    ("finished_ago", "reset"),
    [
        (6 * DAY, False),  # period_days - 1
        (7 * DAY - SECOND, False),
        (7 * DAY, True),  # exactly period_days: "at least"
        (8 * DAY, True),  # period_days + 1
    ],
)
@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.CLOSED])
def test_reset_at_period_days(handler: int, finished_ago: timedelta, reset: bool, status: TaskStatus) -> None:
    task_id = add_done_task(handler, finished_ago, status)
    assert reset_periodic_tasks(NOW) == {"reset": int(reset)}
    assert task(task_id).status is (TaskStatus.NEW if reset else status)


def test_closed_task_counts_from_its_closing(handler: int) -> None:
    # Completed 8 days ago but closed 6 days ago: not yet a full period since it finished.
    task_id = add_done_task(handler, 6 * DAY, TaskStatus.CLOSED)
    db.session.execute(db.update(Task).values(completed_at=NOW - 8 * DAY))
    db.session.commit()
    assert reset_periodic_tasks(NOW) == {"reset": 0}
    assert task(task_id).status is TaskStatus.CLOSED


def test_reset_clears_the_task_and_moves_its_window_to_now(handler: int) -> None:
    task_id = add_done_task(handler, 31 * DAY, period_days=30)
    reset_periodic_tasks(NOW)
    t = task(task_id)
    assert (t.status, t.progress, t.time_progress) == (TaskStatus.NEW, 0, 0.0)
    assert (t.actual_start, t.actual_end, t.completed_at, t.closed_at) == (None, None, None, None)
    assert (t.expected_start, t.expected_end) == (NOW, NOW + 30 * DAY)
    assert t.expected_start.tzinfo is UTC


def test_each_task_uses_its_own_period(handler: int) -> None:
    weekly = add_done_task(handler, 8 * DAY, period_days=7)
    monthly = add_done_task(handler, 8 * DAY, period_days=30)
    daily = add_done_task(handler, 1 * DAY, period_days=1)
    assert reset_periodic_tasks(NOW) == {"reset": 2}
    assert [task(t).status for t in (weekly, monthly, daily)] == [
        TaskStatus.NEW,
        TaskStatus.COMPLETED,
        TaskStatus.NEW,
    ]
    assert task(daily).expected_end == NOW + DAY


def test_non_periodic_and_open_tasks_are_left_alone(handler: int) -> None:
    one_off = add_done_task(handler, 100 * DAY, periodic=False)
    running = add_done_task(handler, 100 * DAY)
    db.session.execute(db.update(Task).where(Task.id == running).values(status=TaskStatus.PROCESSING))
    db.session.commit()
    assert reset_periodic_tasks(NOW) == {"reset": 0}
    assert task(one_off).status is TaskStatus.COMPLETED
    assert task(running).status is TaskStatus.PROCESSING


def test_handler_notified_once_and_second_run_is_a_no_op(handler: int) -> None:
    add_done_task(handler, 8 * DAY)
    assert reset_periodic_tasks(NOW) == {"reset": 1}
    assert reset_periodic_tasks(NOW) == {"reset": 0}
    notes = db.session.execute(select(Notification.user_id, Notification.kind, Notification.title)).all()
    assert [tuple(n) for n in notes] == [
        (handler, NotificationKind.PERIODIC_RESET, "Periodic task reset: Water the plants")
    ]
