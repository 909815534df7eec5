"""Report jobs (seed 003)."""

from __future__ import annotations

import logging

from app.extensions import cronwork
from app.services import reports
from app.services.jobcontext import current_job_id
from app.services.timewindows import app_zone, previous_day, resolve_tick

logger = logging.getLogger(__name__)


def daily_report(scheduled_for: str | None = None) -> dict[str, object]:
    """Yesterday's (APP_TIMEZONE) runs, failures, misses and p95 per schedule, to the admins."""
    tick = resolve_tick(scheduled_for)
    summary = reports.daily_report(cronwork.redis(), cronwork.keys(), previous_day(tick, app_zone()))
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
