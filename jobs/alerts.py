"""Admin alerts on final failures: once per schedule per failure streak, optional auto-pause.

A final failure (retries exhausted, timeout, abandoned) increments the schedule's failure
streak; the first one of a streak notifies the admins. A success ends the streak
(jobs.outcomes deletes both keys with its ledger write). With
`pause_after_failures = N` the schedule is paused after N final failures in a row. When the
database is down (often the very cause), the alert waits in Redis and is delivered later.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask
from redis import Redis
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import NotificationKind
from app.services.notifications import notify_admins
from cronwork import store
from cronwork.keys import Keys

log = logging.getLogger(__name__)

MAX_PENDING_ALERTS = 1000


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
    streak = int(cast(bytes | None, connection.get(keys.failure_streak(name))) or 0)
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
    deliver(app, connection, keys, {"title": title, "body": body})


def deliver(app: Flask, connection: Redis, keys: Keys, alert: dict[str, Any]) -> bool:
    """Write the alert as admin notifications; park it in Redis if the database is down."""
    with app.app_context():
        try:
            count = notify_admins(NotificationKind.JOB_FAILURE, alert["title"], alert["body"])
            db.session.commit()
            log.warning("alert sent to %d admins: %s", count, alert["title"])
            return True
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.error("alert not written, database unavailable (%s); will retry", type(exc).__name__)
            connection.rpush(keys.pending_alerts, json.dumps(alert))
            connection.ltrim(keys.pending_alerts, -MAX_PENDING_ALERTS, -1)
            return False
        finally:
            db.session.remove()


def flush_pending(app: Flask, connection: Redis, keys: Keys) -> int:
    """Deliver parked alerts (oldest first) until one fails again; returns how many went out."""
    sent = 0
    # Bytes: the clients are made without decode_responses (app/extensions.py).
    while raw := cast(bytes | None, connection.lpop(keys.pending_alerts)):
        if not deliver(app, connection, keys, json.loads(raw)):
            # deliver() parked it again at the tail; stop until the database is back.
            break
        sent += 1
    return sent
