"""notify_many: one Core INSERT on SQLite, COPY on PostgreSQL; the rows must read back whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, User
from app.services.alerts import Alert, alert_admins
from app.services.notifications import notify_many

pytestmark = pytest.mark.both_databases  # dialect-specific path: prove it on both

AWKWARD = "tab\there, newline\nthere, back\\slash, quote ' \" , null-ish \\N, ümlaut — 95 %"


def test_notify_many_stores_every_field(app: Flask) -> None:
    users = [User(username=f"u{i}", email=f"u{i}@x", is_admin=i == 0) for i in range(3)]
    db.session.add_all(users)
    db.session.commit()
    before = datetime.now(UTC)
    added = notify_many((u.id, "task_warning", f"title {u.id}", AWKWARD) for u in users)
    assert notify_many([]) == 0
    assert alert_admins(Alert("job_failure", "admins only", "")) == 1
    db.session.commit()
    rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
    assert added == 3 and len(rows) == 4
    assert [(n.user_id, n.kind, n.title, n.body) for n in rows[:3]] == [
        (u.id, "task_warning", f"title {u.id}", AWKWARD) for u in users
    ]
    assert (rows[3].user_id, rows[3].kind, rows[3].body) == (users[0].id, "job_failure", "")
    for note in rows:
        assert note.is_read is False and note.read_at is None
        assert before - timedelta(seconds=1) <= note.created_at <= datetime.now(UTC)
        assert note.created_at.tzinfo is not None


def test_notify_many_joins_the_callers_transaction(app: Flask) -> None:
    user = User(username="solo", email="solo@x")
    db.session.add(user)
    db.session.commit()
    notify_many([(user.id, "task_warning", "rolled back", "")])
    db.session.rollback()
    assert db.session.scalar(select(Notification.id)) is None
