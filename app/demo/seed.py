"""The demo seed: every builder in turn, so each periodic job has work.

The seed is reproducible: one `random.Random(seed)` draws everything, and every timestamp is
an offset from `now`, so the same seed and `now` give the same rows. Rows go in with bulk
INSERTs, so 100,000 tasks take seconds.
"""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select, text

from app.demo.environment import reading_rows, room_rows, setpoint_rows
from app.demo.images import image_rows
from app.demo.rentals import RENTAL_SCENARIOS, rental_row
from app.demo.rows import ids, insert_rows, scenarios
from app.demo.stages import STAGE_SCENARIOS, stage_row
from app.demo.tasks import TASK_SCENARIOS, task_row
from app.demo.users import notification_rows, user_rows
from app.extensions import db
from app.models import (
    Notification,
    Rental,
    Room,
    RoomImage,
    SensorReading,
    Setpoint,
    Stage,
    Task,
    User,
)

DEFAULT_SEED = 42
# fmt: off
SEEDED_MODELS: tuple[type[Any], ...] = (
    User, Task, Notification, Stage, Rental, Room, Setpoint, SensorReading, RoomImage,
)
# fmt: on


def drop_all_tables() -> None:
    """Drop every table and the Alembic version, so the next upgrade starts from scratch."""
    # An open transaction of this session would hold locks DROP TABLE waits on (PostgreSQL).
    db.session.close()
    db.drop_all()
    db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
    db.session.commit()


def existing_counts() -> dict[str, int]:
    """Row counts of the seeded tables that already hold rows, by table name."""
    return {m.__tablename__: n for m in SEEDED_MODELS if (n := _count(m))}


def describe(counts: dict[str, int]) -> str:
    """Counts as text: `3 users, 200 tasks, ...`."""
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


def seed_demo(
    seed: int,
    now: datetime,
    *,
    n_tasks: int,
    n_stages: int,
    n_rentals: int,
    n_rooms: int,
    readings_per_hour: int,
) -> dict[str, int]:
    """Insert and commit the demo rows into empty tables; return how many of each."""
    rng = random.Random(seed)
    created = {"users": insert_rows(User, user_rows(now))}
    user_ids = ids(User)
    created["tasks"] = insert_rows(
        Task,
        (
            task_row(rng, now, k, i, user_ids)
            for i, k in enumerate(scenarios(rng, TASK_SCENARIOS, n_tasks))
        ),
    )
    created["notifications"] = insert_rows(
        Notification, notification_rows(rng, now, user_ids, n_tasks)
    )
    created["stages"] = insert_rows(
        Stage,
        (
            stage_row(rng, now, k, i)
            for i, k in enumerate(scenarios(rng, STAGE_SCENARIOS, n_stages))
        ),
    )
    created["rentals"] = insert_rows(
        Rental,
        (
            rental_row(rng, now, k, i)
            for i, k in enumerate(scenarios(rng, RENTAL_SCENARIOS, n_rentals))
        ),
    )
    created["rooms"] = insert_rows(Room, room_rows(n_rooms))
    room_ids = ids(Room)
    created["setpoints"] = insert_rows(Setpoint, setpoint_rows(room_ids))
    created["sensor_readings"] = insert_rows(
        SensorReading, reading_rows(rng, now, room_ids, readings_per_hour)
    )
    image_root = Path(current_app.config["ROOM_IMAGE_DIR"])
    created["room_images"] = insert_rows(RoomImage, image_rows(rng, now, room_ids, image_root))
    db.session.commit()
    return created


def _count(model: type[Any]) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0
