"""Demo users and their notifications."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from app.demo.rows import Row, ago
from app.models import NotificationKind

USERS = [("admin", True), ("alice", False), ("bob", False)]


def user_rows(now: datetime) -> list[Row]:
    """The fixed demo accounts, created well before `now`."""
    return [
        {
            "username": name,
            "email": f"{name}@example.com",
            "is_admin": admin,
            "created_at": now - timedelta(days=400),
        }
        for name, admin in USERS
    ]


def notification_rows(
    rng: random.Random, now: datetime, user_ids: list[int], n_tasks: int
) -> Iterator[Row]:
    """Unread recent ones and read old ones (some beyond the 180-day retention)."""
    kinds = list(NotificationKind)
    for i in range(max(len(kinds), n_tasks // 20)):
        kind = kinds[i % len(kinds)]
        state = ("unread", "read_old", "read_recent")[i % 3]
        created = (
            ago(now, rng, timedelta(days=181), timedelta(days=400))
            if state == "read_old"
            else ago(now, rng, timedelta(minutes=5), timedelta(days=20))
        )
        yield {
            "user_id": rng.choice(user_ids),
            "kind": kind,
            "title": f"{kind.replace('_', ' ').capitalize()} #{i + 1}",
            "body": f"Demo {kind} notification.",
            "is_read": state != "unread",
            "created_at": created,
            "read_at": None if state == "unread" else created + timedelta(hours=2),
        }
