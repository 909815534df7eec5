"""Report jobs (seed 003)."""

from __future__ import annotations

import logging

from flask import current_app

from app.extensions import get_redis
from app.services import reports
from app.services.jobcontext import current_job_id
from app.services.timewindows import app_zone, previous_day, resolve_tick
from cronwork.keys import Keys

logger = logging.getLogger(__name__)


def daily_report(scheduled_for: str | None = None) -> dict[str, object]:
    """Yesterday's (APP_TIMEZONE) runs, failures, misses and p95 per schedule, to the admins."""
    tick = resolve_tick(scheduled_for)
    keys = Keys(current_app.config["CRONWORK_PREFIX"])
    summary = reports.daily_report(get_redis(), keys, previous_day(tick, app_zone()))
    logger.info(
        "job done job=daily_report job_id=%s tick=%s day=%s runs=%s failures=%s misses=%s",
        current_job_id(),
        tick.isoformat(),
        summary["day"],
        summary["runs"],
        summary["failures"],
        summary["misses"],
    )
    return summary
