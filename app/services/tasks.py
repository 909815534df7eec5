"""Task rules of seed 004: time progress, late-task warnings, periodic resets.

The seed loaded every task and committed row by row; here time progress is one UPDATE with
the arithmetic in SQL, warnings stream through the processing tasks in keyset pages with one
pipelined round of SET NX claims and one commit per page, and resets are one UPDATE …
RETURNING per distinct `period_days`. Memory stays flat whatever the number of tasks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from redis import Redis
from sqlalchemy import ColumnElement, CursorResult, Row, and_, case, func, or_, select, update

from app.extensions import db
from app.models import NotificationKind, Task, TaskStatus
from app.services import dedup
from app.services.notifications import notify_many, notify_user
from app.services.sqltime import epoch_ms, to_epoch_ms

logger = logging.getLogger(__name__)

# (threshold %, level): time used ≥ threshold while progress < threshold. The first match wins,
# so the most urgent level is the one sent. The level is the share of time left.
WARNING_LEVELS: tuple[tuple[float, int], ...] = ((95.0, 5), (90.0, 10), (80.0, 20))
WARNING_BATCH = 5_000
WARNING_TTL = dedup.DAY_SECONDS
DONE_STATUSES = (TaskStatus.COMPLETED, TaskStatus.CLOSED)
TITLE_MAX = 200  # Notification.title


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass an aware datetime")


def time_progress_expr(now: datetime) -> ColumnElement[float]:
    """Share of the expected window elapsed at `now`, in %, clamped to 0–100, as SQL."""
    now_ms = to_epoch_ms(now)
    start, end = epoch_ms(Task.expected_start), epoch_ms(Task.expected_end)
    # The two clamps come first, so the division only sees end > now > start (no zero window).
    return case(
        (end <= now_ms, 100.0),
        (start >= now_ms, 0.0),
        else_=(now_ms - start) * 100.0 / (end - start),
    )


def update_time_progress(now: datetime) -> dict[str, int]:
    """Recompute time_progress of every processing task with a window, in one statement."""
    _require_aware(now)
    progress = time_progress_expr(now)
    result = db.session.execute(
        update(Task)
        .where(
            Task.status == TaskStatus.PROCESSING,
            Task.expected_start.is_not(None),
            Task.expected_end.is_not(None),
        )
        # updated_at is kept: a derived figure moving with the clock is not an edit of the task.
        .values(time_progress=progress, updated_at=Task.updated_at),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    updated = cast(CursorResult[Any], result).rowcount
    logger.info("time progress updated tasks=%d now=%s", updated, now.isoformat())
    return {"updated": updated}


def warning_level_expr() -> ColumnElement[int | None]:
    """The warning level a task has reached (5, 10, 20), or NULL, as SQL."""
    return case(
        *(
            (and_(Task.time_progress >= threshold, Task.progress < threshold), level)
            for threshold, level in WARNING_LEVELS
        ),
        else_=None,
    )


def check_task_warnings(now: datetime, redis: Redis, batch_size: int = WARNING_BATCH) -> dict[str, int]:
    """Refresh time progress, then warn each late task's handler once per level per 24 h.

    Each page of candidates claims its `warning_sent:{task_id}:{level}` keys in one pipeline,
    adds a notification per key won and commits; if that commit fails the page's keys are
    released before the error propagates, so the next run sends those warnings.
    """
    refreshed = update_time_progress(now)["updated"]
    level = warning_level_expr().label("level")
    page = (
        select(Task.id, Task.handler_id, Task.title, Task.time_progress, Task.progress, level)
        .where(
            Task.status == TaskStatus.PROCESSING,
            # The original system's rule: a task is late only against a window it still has. A
            # task whose deadline was removed keeps its last stored time progress, and must
            # not be warned about on it for ever.
            Task.expected_start.is_not(None),
            Task.expected_end.is_not(None),
            level.is_not(None),
        )
        .order_by(Task.id)
        .limit(batch_size)
    )
    last_id, late, notified = 0, 0, 0
    while rows := db.session.execute(page.where(Task.id > last_id)).all():
        last_id = rows[-1].id
        late += len(rows)
        by_key = {dedup.warning_key(row.id, row.level): row for row in rows}
        with dedup.claimed(redis, list(by_key), WARNING_TTL) as won:
            notify_many(_warning(by_key[key]) for key in won)
            db.session.commit()
        notified += len(won)
    summary = {"refreshed": refreshed, "late": late, "notified": notified, "already_sent": late - notified}
    logger.info(
        "task warnings checked refreshed=%d late=%d notified=%d already_sent=%d now=%s",
        refreshed,
        late,
        notified,
        late - notified,
        now.isoformat(),
    )
    return summary


def _warning(row: Row[*tuple[Any, ...]]) -> tuple[int, str, str, str]:
    """(user, kind, title, body) of the warning for one late-task row."""
    return (
        row.handler_id,
        NotificationKind.TASK_WARNING,
        f"Task #{row.id} late: {row.level}% of its time left — {row.title}"[:TITLE_MAX],
        f"Time used {row.time_progress:.1f}%, progress {row.progress}%. Task: {row.title}",
    )


def reset_periodic_tasks(now: datetime) -> dict[str, int]:
    """Reset periodic tasks finished at least `period_days` ago; notify each handler.

    Finished means completed (at `completed_at`) or closed (at `closed_at`, else
    `completed_at`). A reset task is new again, with no progress, no actual dates and an
    expected window from `now` to `now + period_days`. One UPDATE … RETURNING per distinct
    period: the returned rows are exactly the tasks this run reset, so a concurrent run
    never notifies the same reset twice.
    """
    _require_aware(now)
    periods = db.session.scalars(
        select(Task.period_days)
        .where(Task.is_periodic.is_(True), Task.status.in_(DONE_STATUSES))
        .distinct()
    ).all()
    reset = 0
    for period in sorted(periods):
        window = timedelta(days=period)
        cutoff = now - window
        rows = db.session.execute(
            update(Task)
            .where(
                Task.is_periodic.is_(True),
                Task.period_days == period,
                or_(
                    and_(Task.status == TaskStatus.COMPLETED, Task.completed_at <= cutoff),
                    and_(
                        Task.status == TaskStatus.CLOSED,
                        func.coalesce(Task.closed_at, Task.completed_at) <= cutoff,
                    ),
                ),
            )
            .values(
                status=TaskStatus.NEW,
                progress=0,
                time_progress=0.0,
                actual_start=None,
                actual_end=None,
                completed_at=None,
                closed_at=None,
                expected_start=now,
                expected_end=now + window,
                updated_at=now,
            )
            .returning(Task.id, Task.handler_id, Task.title),
            execution_options={"synchronize_session": False},
        ).all()
        for row in rows:
            notify_user(
                row.handler_id,
                NotificationKind.PERIODIC_RESET,
                f"Periodic task reset: {row.title}"[:TITLE_MAX],
                f"Task #{row.id} starts a new {period}-day period, due {(now + window).isoformat()}.",
            )
        db.session.commit()
        reset += len(rows)
        if rows:
            logger.info("periodic tasks reset period_days=%d count=%d", period, len(rows))
    logger.info("periodic reset done reset=%d now=%s", reset, now.isoformat())
    return {"reset": reset}
