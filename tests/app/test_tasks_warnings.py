"""update_time_progress and check_task_warnings: boundaries, set-based, deduplicated in Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import event, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import CompileError, OperationalError

from app.extensions import db
from app.models import Notification, NotificationKind, Task, TaskStatus, User
from app.services.tasks import check_task_warnings, time_progress_expr, update_time_progress

pytestmark = pytest.mark.both_databases  # dialect-specific SQL: prove it on both

NOW = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
WINDOW = timedelta(hours=1000)  # 1 % of it is 10 h: fractions of a percent are whole seconds


@pytest.fixture
def handler(app: Flask) -> int:
    user = User(username="alice", email="alice@example.com")
    db.session.add(user)
    db.session.commit()
    return user.id


def add_task(
    handler: int,
    time_pct: float,
    progress: int = 0,
    status: TaskStatus = TaskStatus.PROCESSING,
    window: timedelta = WINDOW,
) -> int:
    """A committed task whose expected window is `time_pct` % elapsed at NOW."""
    start = NOW - window * (time_pct / 100)
    task = Task(
        title="t",
        handler_id=handler,
        status=status,
        progress=progress,
        expected_start=start,
        expected_end=start + window,
        updated_at=NOW - timedelta(days=3),
    )
    db.session.add(task)
    db.session.commit()
    return task.id


def time_progress(task_id: int) -> float:
    return db.session.scalar(select(Task.time_progress).where(Task.id == task_id))


def warnings() -> list[tuple[int, str]]:
    """(user, title) of every task warning, in id order."""
    db.session.expire_all()
    rows = db.session.execute(
        select(Notification.user_id, Notification.title)
        .where(Notification.kind == NotificationKind.TASK_WARNING)
        .order_by(Notification.id)
    )
    return [tuple(r) for r in rows]


@pytest.mark.parametrize(
    ("elapsed_pct", "expected"),
    [(0, 0.0), (25, 25.0), (79.9, 79.9), (80, 80.0), (95, 95.0), (100, 100.0), (130, 100.0), (-20, 0.0)],
)
def test_time_progress_is_elapsed_over_window_clamped(
    handler: int, elapsed_pct: float, expected: float
) -> None:
    task = add_task(handler, elapsed_pct)
    assert update_time_progress(NOW) == {"updated": 1}
    assert time_progress(task) == pytest.approx(expected, abs=1e-9)


def test_time_progress_at_exactly_80_percent_is_not_a_rounding_error(handler: int) -> None:
    task = add_task(handler, 80, window=timedelta(days=7, seconds=1))
    update_time_progress(NOW)
    assert time_progress(task) >= 80.0


def test_time_progress_only_touches_processing_tasks_with_a_window(handler: int) -> None:
    done = add_task(handler, 50, status=TaskStatus.COMPLETED)
    no_window = Task(title="t", handler_id=handler, status=TaskStatus.PROCESSING)
    db.session.add(no_window)
    db.session.commit()
    assert update_time_progress(NOW) == {"updated": 0}
    assert time_progress(done) == 0.0
    assert time_progress(no_window.id) == 0.0


def test_time_progress_is_one_statement_and_keeps_updated_at(handler: int, statements: list[str]) -> None:
    ids = [add_task(handler, pct) for pct in (10, 50, 90)]
    statements.clear()
    update_time_progress(NOW)
    assert [s.split()[0] for s in statements] == ["UPDATE"]
    stamps = db.session.scalars(select(Task.updated_at).where(Task.id.in_(ids))).all()
    assert stamps == [NOW - timedelta(days=3)] * 3


def test_time_progress_rejects_naive_now(app: Flask) -> None:
    with pytest.raises(ValueError, match="naive"):
        update_time_progress(NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("time_pct", "progress", "level"),
    [
        (79.9, 0, None),
        (80, 0, 20),
        (80, 79, 20),
        (80, 80, None),
        (89.9, 10, 20),
        (90, 10, 10),
        (90, 89, 10),
        (90, 90, None),  # on track for 90; not behind for 80 either
        (94.9, 10, 10),
        (95, 10, 5),
        (95, 94, 5),
        (95, 95, None),
        (100, 99, None),
        (130, 50, 5),
    ],
)
def test_warning_level_boundaries(
    handler: int, redis: Redis, time_pct: float, progress: int, level: int | None
) -> None:
    task = add_task(handler, time_pct, progress)
    summary = check_task_warnings(NOW, redis)
    assert summary["notified"] == (0 if level is None else 1)
    assert sorted(k.decode() for k in redis.keys("warning_sent:*")) == (
        [] if level is None else [f"warning_sent:{task}:{level}"]
    )
    if level is not None:
        assert redis.ttl(f"warning_sent:{task}:{level}") == pytest.approx(86400, abs=5)
        assert warnings() == [(handler, f"Task #{task} late: {level}% of its time left — t")]


def test_one_warning_per_task_and_level_per_day(handler: int, redis: Redis) -> None:
    tasks = [add_task(handler, 96, 10), add_task(handler, 85, 10), add_task(handler, 50, 10)]
    first = check_task_warnings(NOW, redis, batch_size=1)  # several pages
    second = check_task_warnings(NOW, redis)
    assert first == {"refreshed": 3, "late": 2, "notified": 2, "already_sent": 0}
    assert second == {"refreshed": 3, "late": 2, "notified": 0, "already_sent": 2}
    assert len(warnings()) == 2
    # A task that slips to the next level is warned again, once.
    db.session.execute(db.update(Task).where(Task.id == tasks[1]).values(expected_end=NOW))
    db.session.commit()
    assert check_task_warnings(NOW, redis)["notified"] == 1
    assert redis.exists(f"warning_sent:{tasks[1]}:5")


@pytest.mark.parametrize("removed", ["expected_start", "expected_end"])
def test_a_task_without_a_window_gets_no_more_warnings_whatever_its_stored_progress(
    handler: int, redis: Redis, removed: str
) -> None:
    """Issue 14, point 7: the deadline was removed after the task had reached 96 %."""
    task = add_task(handler, 96, 10)
    check_task_warnings(NOW, redis)
    assert time_progress(task) == pytest.approx(96)
    for key in redis.scan_iter("warning_sent:*"):
        redis.delete(key)  # a day later: the 24 h dedup is gone
    db.session.execute(db.update(Task).where(Task.id == task).values({removed: None}))
    db.session.commit()
    before = len(warnings())
    assert check_task_warnings(NOW, redis) == {"refreshed": 0, "late": 0, "notified": 0, "already_sent": 0}
    assert len(warnings()) == before
    assert time_progress(task) == pytest.approx(96)  # kept, as the original system keeps it


def test_key_claimed_elsewhere_suppresses_the_warning(handler: int, redis: Redis) -> None:
    task = add_task(handler, 96, 10)
    redis.set(f"warning_sent:{task}:5", 1, ex=86400)
    assert check_task_warnings(NOW, redis)["notified"] == 0
    assert warnings() == []


def test_commit_failure_releases_the_claimed_keys(handler: int, redis: Redis) -> None:
    task = add_task(handler, 96, 10)
    other = add_task(handler, 85, 10)
    redis.set(f"warning_sent:{other}:20", 1, ex=86400)  # claimed by an earlier run: must stay

    def fail(session: Any) -> None:  # only the commit that carries the warnings fails
        if session.scalar(select(func.count()).select_from(Notification)):
            raise OperationalError("INSERT INTO notifications", {}, Exception("disk I/O error"))

    event.listen(db.session, "before_commit", fail)
    try:
        with pytest.raises(OperationalError):
            check_task_warnings(NOW, redis)
    finally:
        event.remove(db.session, "before_commit", fail)
    db.session.rollback()
    assert not redis.exists(f"warning_sent:{task}:5")
    assert redis.exists(f"warning_sent:{other}:20")
    assert warnings() == []
    # The next run sends the warning the failed run could not.
    assert check_task_warnings(NOW, redis)["notified"] == 1
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_time_progress_sql_for_each_dialect() -> None:
    stmt = select(time_progress_expr(NOW))
    sqlite_sql = str(stmt.compile(dialect=sqlite.dialect()))
    postgres_sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert "julianday(tasks.expected_start)" in sqlite_sql
    assert "EXTRACT(EPOCH FROM tasks.expected_end) * 1000" in postgres_sql
    with pytest.raises(CompileError, match="epoch_ms.*'mysql'"):
        stmt.compile(dialect=mysql.dialect())
