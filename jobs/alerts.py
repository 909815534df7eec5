"""Admin alerts on final failures: once per schedule per failure streak, optional auto-pause.

A final failure (retries exhausted, timeout, abandoned) increments the schedule's failure
streak; the first one of a streak notifies the admins. A success ends the streak
(jobs.outcomes deletes both keys with its ledger write). With
`pause_after_failures = N` the schedule is paused after N final failures in a row. When the
database is down (often the very cause), or no admin user exists yet, the alert waits in Redis
and is delivered later (app.services.alerts).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask
from redis import Redis
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import NotificationKind
from app.services.alerts import Alert, alert_admins, keep
from app.services.alerts import flush_pending as flush_alerts
from cronwork import store
from cronwork.keys import Keys
from cronwork.runs import failure_streak

log = logging.getLogger(__name__)

def on_final_failure(
    app: Flask,
    connection: Redis,
    keys: Keys,
    name: str,
    job_id: str,
    state: str,
    error: str,
    pause_after: int,
) -> None:
    """Alert once per failure streak, pause after `pause_after` final failures in a row."""
    # The run writer (cronwork.runs) counts the streak, once per tick; alerts only read it.
    streak = failure_streak(connection, keys, name)
    paused = False
    if pause_after and streak >= pause_after and not store.is_paused(connection, keys, name):
        reason = f"auto-paused after {streak} consecutive failures (last: {job_id})"
        store.set_pause(connection, keys, name, store.Pause(reason, datetime.now(UTC).isoformat()))
        paused = True
        log.warning("auto-paused schedule=%s streak=%d", name, streak)
    if not paused and not connection.set(keys.alerted(name), job_id, nx=True):
        return  # admins already know about this streak
    connection.set(keys.alerted(name), job_id)
    title = f"Schedule {name}: run {state}"
    body = f"Run {job_id} ended {state} ({streak} in a row): {error}"
    if paused:
        title += " — schedule paused"
        body += f"\nThe schedule was paused after {streak} consecutive failures; resume it when fixed."
    deliver(app, connection, keys, Alert(NotificationKind.JOB_FAILURE, title, body))


def deliver(app: Flask, connection: Redis, keys: Keys, alert: Alert) -> bool:
    """Write the alert as admin notifications (kept in Redis for the first admin when there is
    none); keep it in Redis when the database is down. False when it is kept."""
    with app.app_context():
        try:
            count = alert_admins(alert)
            db.session.commit()
        except SQLAlchemyError as exc:
            db.session.rollback()
            keep(connection, keys, alert, f"database unavailable: {type(exc).__name__}")
            return False
        finally:
            db.session.remove()
    if count:
        log.warning("alert sent to %d admins: %s", count, alert.title)
    return bool(count)


def flush_pending(app: Flask) -> int:
    """Deliver the alerts kept in Redis once an admin exists and the database answers."""
    with app.app_context():
        try:
            return flush_alerts()
        finally:
            db.session.remove()
