"""cleanup_old_data: retention boundaries for tasks and notifications, ledger trimming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, Task, TaskStatus, User
from app.services.cleanup import cleanup_old_data, delete_in_batches
from cronwork.keys import Keys
from cronwork.ledger import Ledger

pytestmark = pytest.mark.both_databases  # dialect-specific SQL: prove it on both

NOW = datetime(2026, 3, 1, 3, 0, 0, tzinfo=UTC)
DAY, SECOND = timedelta(days=1), timedelta(seconds=1)
KEYS = Keys("cronwork")


@pytest.fixture
def user(app: Flask) -> int:
    u = User(username="carol", email="carol@example.com")
    db.session.add(u)
    db.session.commit()
    return u.id


def add_task(user: int, status: TaskStatus, updated_ago: timedelta, periodic: bool = False) -> int:
    t = Task(title="t", handler_id=user, status=status, is_periodic=periodic, updated_at=NOW - updated_ago)
    db.session.add(t)
    db.session.commit()
    return t.id


def add_note(user: int, created_ago: timedelta, read: bool) -> int:
    n = Notification(user_id=user, kind="k", title="n", is_read=read, created_at=NOW - created_ago)
    db.session.add(n)
    db.session.commit()
    return n.id


def remaining(model: type) -> set[int]:
    return set(db.session.scalars(select(model.id)))


def test_retention_boundaries(user: int, redis: Redis) -> None:
    keep = {
        add_task(user, TaskStatus.CLOSED, 90 * DAY - SECOND),
        add_task(user, TaskStatus.COMPLETED, 400 * DAY),
        add_task(user, TaskStatus.CLOSED, 400 * DAY, periodic=True),  # reset, never deleted
    }
    gone = {add_task(user, TaskStatus.CLOSED, 90 * DAY + SECOND), add_task(user, TaskStatus.CLOSED, 900 * DAY)}
    notes_kept = {add_note(user, 180 * DAY - SECOND, read=True), add_note(user, 900 * DAY, read=False)}
    add_note(user, 180 * DAY + SECOND, read=True)
    summary = cleanup_old_data(NOW, redis, KEYS)
    assert summary == {"tasks": len(gone), "notifications": 1, "ledger_entries": 0}
    assert remaining(Task) == keep
    assert remaining(Notification) == notes_kept
    assert cleanup_old_data(NOW, redis, KEYS) == {"tasks": 0, "notifications": 0, "ledger_entries": 0}


def test_deletes_in_batches(user: int) -> None:
    for _ in range(7):
        add_note(user, 400 * DAY, read=True)
    assert delete_in_batches(Notification, Notification.is_read.is_(True), batch_size=3) == 7
    assert remaining(Notification) == set()


def test_old_ledger_entries_are_trimmed(redis: Redis) -> None:
    ledger = Ledger(redis, KEYS)
    old, recent = int((NOW - 91 * DAY).timestamp()), int((NOW - 89 * DAY).timestamp())
    for name in ("check_task_warnings", "daily_report"):
        ledger.put(name, old, {"state": "succeeded"})
        ledger.put(name, recent, {"state": "failed"})
    redis.set("other:ledger:thing", 1)  # another prefix: not ours
    assert cleanup_old_data(NOW, redis, KEYS)["ledger_entries"] == 2
    for name in ("check_task_warnings", "daily_report"):
        assert [r["tick"] for r in ledger.history(name)] == [recent]
        assert not redis.exists(ledger.run_key(name, old))
    assert redis.exists("other:ledger:thing")
