"""System jobs: the end-to-end health check."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from rq import get_current_job

from app.services.heartbeat import write_heartbeat


def health_check(scheduled_for: str | None = None) -> dict[str, object]:
    """Prove scheduler → queue → worker → DB → Redis: write a heartbeat /healthz reads."""
    job = get_current_job()
    job_id = job.id if job else None
    beat_at = write_heartbeat(job_id, detail=f"app={current_app.name}")
    summary: dict[str, object] = {"beat_at": beat_at.isoformat(), "app_context": current_app.name}
    if scheduled_for:
        tick = datetime.fromisoformat(scheduled_for)
        summary["lag_seconds"] = round((datetime.now(UTC) - tick).total_seconds(), 3)
    return summary
