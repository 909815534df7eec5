"""The health_check heartbeat: written by the job on a worker, read by /healthz."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app

from app.extensions import db, get_redis
from app.models.system import HEALTH_CHECK_HEARTBEAT as HEALTH_CHECK
from app.models.system import Heartbeat


def redis_heartbeat_key() -> str:
    return f"{current_app.config['CRONWORK_PREFIX']}:heartbeat:{HEALTH_CHECK}"


def write_heartbeat(job_id: str | None, detail: str) -> datetime:
    """Record a beat in the database and in Redis; returns its time."""
    beat_at = datetime.now(UTC)
    db.session.merge(Heartbeat(name=HEALTH_CHECK, beat_at=beat_at, job_id=job_id, detail=detail))
    db.session.commit()
    get_redis().set(redis_heartbeat_key(), beat_at.isoformat(), ex=24 * 3600)
    return beat_at


def heartbeat_age(now: datetime) -> float | None:
    """Seconds since the last beat committed to the database, or None if there was none."""
    beat = db.session.get(Heartbeat, HEALTH_CHECK)
    if beat is None:
        return None
    return (now - beat.beat_at).total_seconds()
