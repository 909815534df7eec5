"""Environment monitoring (seed 002): daily statistics and hourly setpoint alerts.

Both work on a window derived from the run's tick in APP_TIMEZONE (see timewindows), so a
late or requeued run covers the day or hour its occurrence belongs to.
"""

from __future__ import annotations

import logging
from typing import cast

from redis import Redis
from sqlalchemy import Table, func, or_, select

from app.extensions import db
from app.models import DailyEnvStat, NotificationKind, Room, SensorReading, Setpoint
from app.services import dedup
from app.services.alerts import Alert, alert_admins
from app.services.timewindows import Window
from app.services.upsert import upsert_insert

logger = logging.getLogger(__name__)

ALERT_TTL = 2 * dedup.DAY_SECONDS  # longer than any re-run of the same hour


def daily_env_stats(day: Window) -> dict[str, object]:
    """Min/max/avg/count per room and metric of the readings in `day`, upserted.

    `DailyEnvStat.day` is the local date of the window; a re-run rewrites the same rows.
    """
    if day.day is None:
        raise ValueError("daily_env_stats needs a day window (timewindows.previous_day)")
    rows = db.session.execute(
        select(
            SensorReading.room_id,
            SensorReading.metric,
            func.min(SensorReading.value).label("min_value"),
            func.max(SensorReading.value).label("max_value"),
            func.avg(SensorReading.value).label("avg_value"),
            func.count().label("count"),
        )
        .where(SensorReading.recorded_at >= day.start, SensorReading.recorded_at < day.end)
        .group_by(SensorReading.room_id, SensorReading.metric)
    ).all()
    if rows:
        # SQLAlchemy types __table__ as FromClause (a class may map a join); ours is a Table.
        insert = upsert_insert(cast(Table, DailyEnvStat.__table__))
        upsert = insert.on_conflict_do_update(
            index_elements=["room_id", "metric", "day"],
            set_={c: insert.excluded[c] for c in ("min_value", "max_value", "avg_value", "count")},
        )
        db.session.execute(upsert, [{**row._asdict(), "day": day.day} for row in rows])
    db.session.commit()
    logger.info(
        "daily env stats written day=%s rows=%d start=%s end=%s",
        day.day.isoformat(),
        len(rows),
        day.start.isoformat(),
        day.end.isoformat(),
    )
    return {"day": day.day.isoformat(), "stats": len(rows)}


def hourly_setpoint_monitoring(hour: Window, redis: Redis) -> dict[str, int]:
    """One alert to admins per (room, metric, hour) with readings outside the room's setpoint.

    The alert is claimed in Redis (`setpoint_alert:{room}:{metric}:{hour epoch}`) before it
    is committed, and released if the commit fails.
    """
    outside = or_(
        SensorReading.value < Setpoint.min_value, SensorReading.value > Setpoint.max_value
    )
    rows = db.session.execute(
        select(
            SensorReading.room_id,
            Room.name,
            SensorReading.metric,
            Setpoint.min_value,
            Setpoint.max_value,
            func.count().label("excursions"),
            func.min(SensorReading.value).label("lowest"),
            func.max(SensorReading.value).label("highest"),
        )
        .join(
            Setpoint,
            (Setpoint.room_id == SensorReading.room_id) & (Setpoint.metric == SensorReading.metric),
        )
        .join(Room, Room.id == SensorReading.room_id)
        .where(SensorReading.recorded_at >= hour.start, SensorReading.recorded_at < hour.end, outside)
        .group_by(
            SensorReading.room_id,
            Room.name,
            SensorReading.metric,
            Setpoint.min_value,
            Setpoint.max_value,
        )
        .order_by(SensorReading.room_id, SensorReading.metric)
    ).all()
    by_key = {dedup.setpoint_alert_key(r.room_id, r.metric, hour.start_epoch): r for r in rows}
    with dedup.claimed(redis, list(by_key), ALERT_TTL) as won:
        for key in won:
            row = by_key[key]
            alert_admins(
                Alert(
                    NotificationKind.SETPOINT_ALERT,
                    f"{row.name}: {row.metric} outside its setpoint",
                    f"{row.excursions} reading(s) between {hour.start.isoformat()} and "
                    f"{hour.end.isoformat()} outside [{_bound(row.min_value)}, {_bound(row.max_value)}]: "
                    f"lowest {row.lowest:g}, highest {row.highest:g}.",
                )
            )
        db.session.commit()
    logger.info(
        "setpoints checked hour_start=%s out_of_range=%d alerts=%d already_sent=%d",
        hour.start.isoformat(),
        len(rows),
        len(won),
        len(rows) - len(won),
    )
    return {"out_of_range": len(rows), "alerts": len(won), "already_sent": len(rows) - len(won)}


def _bound(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"
