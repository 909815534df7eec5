"""Admin alerts that always reach someone (issue 14, point 8).

Every alert meant for the admins (a final job failure, a setpoint excursion, the daily
report, a shipment failed for good) goes through `alert_admins`: one notification per admin,
added to the caller's transaction. With no admin user yet it is not lost: it is kept in
Redis (`<prefix>:pending_alerts`, JSON, oldest first, capped at MAX_PENDING_ALERTS) with a
warning in the log, so is an alert the database refused (jobs.alerts), and `flush_pending`
delivers them once an admin exists (every worker's maintenance, every 15 s, and
`flask --app app users create-admin`). /metrics shows how many wait
(`cronwork_alerts_pending`).

Before, such an alert was written to nobody while its dedup key said it had been sent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import cast

from redis import Redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import cronwork, db
from app.models import NotificationKind, User
from app.services.notifications import notify_many
from cronwork.keys import Keys

log = logging.getLogger(__name__)

MAX_PENDING_ALERTS = 1000


@dataclass(frozen=True)
class Alert:
    """What the admins are told: a notification kind, a title and a body."""

    kind: str
    title: str
    body: str

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> Alert:
        """An alert kept in Redis; ValueError when it is not one. Entries kept before the kind
        was stored are job failures."""
        data = json.loads(raw)
        if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in ("title", "body")):
            raise ValueError("not an alert")
        kind = data.get("kind", NotificationKind.JOB_FAILURE)
        return cls(str(kind), data["title"], data["body"])


def admin_ids() -> list[int]:
    """The ids of every admin user."""
    return list(db.session.scalars(select(User.id).where(User.is_admin.is_(True))))


def alert_admins(alert: Alert) -> int:
    """Notify every admin in the caller's session (the caller commits); returns how many.

    0 admins: the alert is kept in Redis for the first admin, and 0 is returned."""
    ids = admin_ids()
    if not ids:
        keep(cronwork.redis(), cronwork.keys(), alert, "no admin user")
        return 0
    return notify_many((uid, alert.kind, alert.title, alert.body) for uid in ids)


def keep(redis: Redis, keys: Keys, alert: Alert, why: str) -> None:
    """Keep an alert that could not be written, behind the others, the list capped."""
    with redis.pipeline() as pipe:
        pipe.rpush(keys.pending_alerts, alert.encode())
        pipe.ltrim(keys.pending_alerts, -MAX_PENDING_ALERTS, -1)
        pipe.execute()
    log.warning("alert kept until it can be delivered (%s): %s", why, alert.title)


def pending_count(redis: Redis, keys: Keys) -> int:
    """How many alerts wait for an admin or the database."""
    return int(cast(int, redis.llen(keys.pending_alerts)))


def flush_pending() -> int:
    """Deliver the kept alerts, oldest first, while an admin exists and the database answers;
    returns how many went out. One that does not decode is dropped, with its excerpt logged."""
    redis, keys = cronwork.redis(), cronwork.keys()
    if not pending_count(redis, keys) or not (ids := admin_ids()):
        return 0
    sent = 0
    while raw := cast(bytes | None, redis.lpop(keys.pending_alerts)):
        try:
            alert = Alert.decode(raw)
        except ValueError:
            log.error("pending alert dropped, not an alert: %r", raw[:80])
            continue
        try:
            notify_many((uid, alert.kind, alert.title, alert.body) for uid in ids)
            db.session.commit()
        except SQLAlchemyError as exc:
            db.session.rollback()
            redis.lpush(keys.pending_alerts, raw)  # back at the head: order is kept
            log.error("pending alerts kept, database unavailable (%s)", type(exc).__name__)
            break
        sent += 1
    if sent:
        log.info("pending alerts delivered: %d", sent)
    return sent
