"""Task jobs (seed 004): time progress, warnings, periodic resets, retention.

These sync the tasks with the present, so they use the clock; the tick is validated and
logged. A late run does everything the missed one would have done, and no more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from app.extensions import cronwork
from app.models import now_utc
from app.services import cleanup, tasks
from app.services.jobcontext import current_job_id
from app.services.timewindows import resolve_tick

logger = logging.getLogger(__name__)


def _run(job: str, scheduled_for: str | None, work: Callable[[datetime], dict[str, int]]) -> dict[str, int]:
    """Run `work(now)`, then log its summary as key=value fields with the job id and tick."""
    tick = resolve_tick(scheduled_for)
    summary = work(now_utc())
    fields = " ".join(f"{k}={v}" for k, v in summary.items())
    logger.info("job done job=%s job_id=%s tick=%s %s", job, current_job_id(), tick.isoformat(), fields)
    return summary


def update_time_progress(scheduled_for: str | None = None) -> dict[str, int]:
    """Recompute time_progress of processing tasks (one set-based UPDATE)."""
    return _run("update_time_progress", scheduled_for, tasks.update_time_progress)


def check_task_warnings(scheduled_for: str | None = None) -> dict[str, int]:
    """Warn handlers of late tasks at 80/90/95 % of their time, once per level per 24 h."""
    redis = cronwork.redis()
    return _run("check_task_warnings", scheduled_for, lambda now: tasks.check_task_warnings(now, redis))


def reset_periodic_tasks(scheduled_for: str | None = None) -> dict[str, int]:
    """Reset periodic tasks finished at least `period_days` ago and notify their handlers."""
    return _run("reset_periodic_tasks", scheduled_for, tasks.reset_periodic_tasks)


def cleanup_old_data(scheduled_for: str | None = None) -> dict[str, int]:
    """Delete old closed tasks and read notifications; trim old ledger entries."""
    redis, keys = cronwork.redis(), cronwork.keys()
    return _run("cleanup_old_data", scheduled_for, lambda now: cleanup.cleanup_old_data(now, redis, keys))
