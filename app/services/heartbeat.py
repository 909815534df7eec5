"""The health_check heartbeat: written by the job on a worker, read by /healthz.

It lives in the database only: a committed row proves scheduler → queue → worker → DB (the
worker's own Redis writes prove Redis). The copy this module also wrote to Redis
(`<prefix>:heartbeat:health_check`) was never read by anything and is gone (issue 10).
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.extensions import db
from app.models.system import HEALTH_CHECK_HEARTBEAT as HEALTH_CHECK
from app.models.system import Heartbeat


def write_heartbeat(job_id: str | None, detail: str) -> datetime:
    """Record a beat in the database; returns its time."""
    beat_at = datetime.now(UTC)
    db.session.merge(Heartbeat(name=HEALTH_CHECK, beat_at=beat_at, job_id=job_id, detail=detail))
    db.session.commit()
    return beat_at


def heartbeat_age(now: datetime) -> float | None:
    """Seconds since the last beat committed to the database, or None if there was none."""
    beat = db.session.get(Heartbeat, HEALTH_CHECK)
    if beat is None:
        return None
    return (now - beat.beat_at).total_seconds()
