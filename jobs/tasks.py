"""Task jobs (seed 004): time progress, warnings, periodic resets, retention.

These sync the tasks with the present, so they use the clock; the tick is logged. A late
run does everything the missed one would have done.
"""

from __future__ import annotations

import logging

from flask import current_app

from app.extensions import get_redis
from app.models import now_utc
from app.services import cleanup, tasks
from app.services.jobcontext import current_job_id
from app.services.timewindows import resolve_tick
from scheduler_boot.keys import Keys

logger = logging.getLogger(__name__)


def _done(job: str, scheduled_for: str | None, summary: dict[str, int]) -> dict[str, int]:
    tick = resolve_tick(scheduled_for)
    fields = " ".join(f"{k}={v}" for k, v in summary.items())
    logger.info("job done job=%s job_id=%s tick=%s %s", job, current_job_id(), tick.isoformat(), fields)
    return summary


def update_time_progress(scheduled_for: str | None = None) -> dict[str, int]:
    """Recompute time_progress of processing tasks (one set-based UPDATE)."""
    return _done("update_time_progress", scheduled_for, tasks.update_time_progress(now_utc()))


def check_task_warnings(scheduled_for: str | None = None) -> dict[str, int]:
    """Warn handlers of late tasks at 80/90/95 % of their time, once per level per 24 h."""
    summary = tasks.check_task_warnings(now_utc(), get_redis())
    return _done("check_task_warnings", scheduled_for, summary)


def reset_periodic_tasks(scheduled_for: str | None = None) -> dict[str, int]:
    """Reset periodic tasks finished at least `period_days` ago and notify their handlers."""
    return _done("reset_periodic_tasks", scheduled_for, tasks.reset_periodic_tasks(now_utc()))


def cleanup_old_data(scheduled_for: str | None = None) -> dict[str, int]:
    """Delete old closed tasks and read notifications; trim old ledger entries."""
    keys = Keys(current_app.config["CRONWORK_PREFIX"])
    summary = cleanup.cleanup_old_data(now_utc(), get_redis(), keys)
    return _done("cleanup_old_data", scheduled_for, summary)
