"""Writing notifications: to one user, or to every admin. The caller commits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select

from app.extensions import db
from app.models import Notification, User
from app.models.base import now_utc


def notify_user(user_id: int, kind: str, title: str, body: str = "") -> None:
    """Add one notification to the session (committed by the caller)."""
    db.session.add(Notification(user_id=user_id, kind=kind, title=title, body=body, created_at=now_utc()))


def notify_admins(kind: str, title: str, body: str = "") -> int:
    """One notification per admin user, in one INSERT; returns how many were added."""
    admin_ids = db.session.scalars(select(User.id).where(User.is_admin.is_(True))).all()
    if admin_ids:
        created = now_utc()
        rows = [
            {"user_id": uid, "kind": kind, "title": title, "body": body, "created_at": created}
            for uid in admin_ids
        ]
        db.session.execute(insert(Notification), rows)
    return len(admin_ids)


def notify_many(notes: Iterable[tuple[int, str, str, str]]) -> int:
    """Many notifications, (user_id, kind, title, body) each, in one INSERT; the caller commits.

    For jobs that notify thousands of users at once (task warnings): one executemany instead
    of one ORM object per row, several times faster.
    """
    created = now_utc()
    rows = [
        {"user_id": uid, "kind": kind, "title": title, "body": body, "created_at": created}
        for uid, kind, title, body in notes
    ]
    if rows:
        db.session.execute(insert(Notification), rows)
    return len(rows)
