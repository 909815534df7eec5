"""Retention: old closed tasks, old read notifications and old ledger entries go away.

Rows are deleted in batches of `DELETE_BATCH` with a commit each, so a large backlog never
holds one long write lock (SQLite) or builds one huge transaction (PostgreSQL).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from redis import Redis
from sqlalchemy import ColumnElement, CursorResult, delete, select

from app.extensions import db
from app.models import Notification, Task, TaskStatus
from cronwork.keys import Keys
from cronwork.ledger import Ledger

logger = logging.getLogger(__name__)

TASK_RETENTION = timedelta(days=90)
NOTIFICATION_RETENTION = timedelta(days=180)
LEDGER_RETENTION = timedelta(days=90)
DELETE_BATCH = 5_000


def delete_in_batches(model: Any, *where: ColumnElement[bool], batch_size: int = DELETE_BATCH) -> int:
    """Delete the rows of `model` matching `where`, `batch_size` per statement and commit."""
    total = 0
    while True:
        ids = select(model.id).where(*where).limit(batch_size).scalar_subquery()
        result = db.session.execute(
            delete(model).where(model.id.in_(ids)),
            execution_options={"synchronize_session": False},
        )
        db.session.commit()
        deleted = cast(CursorResult[Any], result).rowcount
        total += deleted
        if deleted < batch_size:
            return total


def trim_ledger(redis: Redis, keys: Keys, before: datetime) -> int:
    """Drop ledger entries of every schedule whose tick is older than `before`; returns how many.

    Each schedule's index (`<prefix>:ledger:<name>`, score = tick epoch) loses its old members
    and their run hashes are deleted (most have expired already; this catches the rest).
    """
    ledger = Ledger(redis, keys)
    index_head = keys.ledger("")
    below = f"({int(before.timestamp())}"
    removed = 0
    for raw in redis.scan_iter(match=keys.ledger("*"), count=500):
        index = raw.decode() if isinstance(raw, bytes) else raw
        old = cast(list[bytes], redis.zrangebyscore(index, "-inf", below))  # no decode_responses
        if not old:
            continue
        name = index[len(index_head) :]
        with redis.pipeline(transaction=False) as pipe:
            pipe.delete(*(ledger.run_key(name, int(tick)) for tick in old))
            pipe.zremrangebyscore(index, "-inf", below)
            pipe.execute()
        removed += len(old)
    return removed


def cleanup_old_data(now: datetime, redis: Redis, keys: Keys) -> dict[str, int]:
    """Apply every retention rule as of `now`; return how much each removed.

    Periodic tasks are kept whatever their age: a closed periodic task is reset, not deleted.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass an aware datetime")
    tasks = delete_in_batches(
        Task,
        Task.status == TaskStatus.CLOSED,
        Task.is_periodic.is_(False),
        Task.updated_at < now - TASK_RETENTION,
    )
    notifications = delete_in_batches(
        Notification,
        Notification.is_read.is_(True),
        Notification.created_at < now - NOTIFICATION_RETENTION,
    )
    ledger_entries = trim_ledger(redis, keys, now - LEDGER_RETENTION)
    summary = {"tasks": tasks, "notifications": notifications, "ledger_entries": ledger_entries}
    logger.info(
        "old data cleaned tasks=%d notifications=%d ledger_entries=%d now=%s",
        tasks,
        notifications,
        ledger_entries,
        now.isoformat(),
    )
    return summary
