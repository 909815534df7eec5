"""Seed 004's task jobs as the seed wrote them, kept for the benchmark's comparison only.

Row by row: load every processing task, compute in Python, commit after each task; the
warning dedup is EXISTS then SETEX (a race between two runs: both can see "absent").
Never scheduled; `bench.domain` times it against app.services.tasks on the same data.
"""

from __future__ import annotations

from datetime import datetime

from redis import Redis
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, NotificationKind, Task, TaskStatus

LEVELS = ((95, 5), (90, 10), (80, 20))


def _time_progress(task: Task, now: datetime) -> float:
    total = (task.expected_end - task.expected_start).total_seconds()
    if total <= 0:
        return 100.0
    elapsed = (now - task.expected_start).total_seconds()
    return max(0.0, min(100.0, elapsed / total * 100))


def update_time_progress(now: datetime) -> int:
    """Every processing task loaded, recomputed and committed one at a time."""
    tasks = db.session.scalars(select(Task).where(Task.status == TaskStatus.PROCESSING)).all()
    updated = 0
    for task in tasks:
        if task.expected_start and task.expected_end:
            task.time_progress = _time_progress(task, now)
            db.session.commit()
            updated += 1
    return updated


def check_task_warnings(now: datetime, redis: Redis) -> int:
    """Every processing task: recompute, pick a level, EXISTS then SETEX, commit per task."""
    tasks = db.session.scalars(select(Task).where(Task.status == TaskStatus.PROCESSING)).all()
    sent = 0
    for task in tasks:
        if not (task.expected_start and task.expected_end):
            continue
        task.time_progress = _time_progress(task, now)
        level = next(
            (
                lvl
                for threshold, lvl in LEVELS
                if task.time_progress >= threshold and task.progress < threshold
            ),
            None,
        )
        if level is not None:
            key = f"warning_sent:{task.id}:{level}"
            if not redis.exists(key):
                db.session.add(
                    Notification(
                        user_id=task.handler_id,
                        kind=NotificationKind.TASK_WARNING,
                        title=f"Task #{task.id} late: {level}% of its time left",
                        body=task.title,
                    )
                )
                redis.setex(key, 86400, 1)
                sent += 1
        db.session.commit()
    return sent
