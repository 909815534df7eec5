"""Environment jobs (seed 002): the window comes from the tick, in APP_TIMEZONE."""

from __future__ import annotations

import logging

from app.extensions import cronwork
from app.services import environment
from app.services.jobcontext import current_job_id
from app.services.timewindows import app_zone, previous_day, previous_hour, resolve_tick

logger = logging.getLogger(__name__)


def daily_env_stats(scheduled_for: str | None = None) -> dict[str, object]:
    """Min/max/avg/count per room and metric of the previous local day, upserted."""
    tick = resolve_tick(scheduled_for)
    summary = environment.daily_env_stats(previous_day(tick, app_zone()))
    logger.info(
        "job done job=daily_env_stats job_id=%s tick=%s day=%s stats=%s",
        current_job_id(),
        tick.isoformat(),
        summary["day"],
        summary["stats"],
    )
    return summary


def hourly_setpoint_monitoring(scheduled_for: str | None = None) -> dict[str, int]:
    """Alert admins once per (room, metric, hour) of readings outside setpoints last hour."""
    tick = resolve_tick(scheduled_for)
    hour = previous_hour(tick, app_zone())
    summary = environment.hourly_setpoint_monitoring(hour, cronwork.redis())
    logger.info(
        "job done job=hourly_setpoint_monitoring job_id=%s tick=%s hour_start=%s alerts=%d",
        current_job_id(),
        tick.isoformat(),
        hour.start.isoformat(),
        summary["alerts"],
    )
    return summary
