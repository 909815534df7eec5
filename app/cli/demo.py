"""`flask demo seed`: migrate the schema, then data so every periodic job has work.

The seed is reproducible: one `random.Random(seed)` draws everything, and every timestamp is
an offset from `--now` (default: the current time), so the same `--seed` and `--now` give
the same rows. Rows go in with bulk INSERTs, so `--tasks 100000` takes seconds.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import click
from flask.cli import AppGroup
from flask_migrate import upgrade
from sqlalchemy import func, insert, select, text

from app.extensions import db
from app.models import (
    Metric,
    Notification,
    NotificationKind,
    Rental,
    RentalStatus,
    Room,
    SensorReading,
    Setpoint,
    Stage,
    StageStatus,
    Task,
    TaskStatus,
    User,
    now_utc,
)

Row = dict[str, Any]

DEFAULT_SEED = 42
INSERT_CHUNK = 10_000
READING_HOURS = 26  # a full previous day for daily_env_stats, whatever the time of the run
EXCURSION_RATE = 0.03  # share of readings outside their setpoint
# fmt: off
SEEDED_MODELS: tuple[type[Any], ...] = (
    User, Task, Notification, Stage, Rental, Room, Setpoint, SensorReading,
)
# Scenario weights: each scenario gives at least one row (when N allows), the rest are drawn.
TASK_SCENARIOS = {
    "new": 15, "warn_95": 4, "warn_90": 4, "warn_80": 6, "on_track": 25, "overdue": 4,
    "periodic_due_completed": 6, "periodic_due_closed": 3, "periodic_recent": 6,
    "completed": 12, "closed_recent": 8, "closed_old": 7,
}
STAGE_SCENARIOS = {
    "due_start": 3, "starts_soon": 3, "future": 3, "missed": 1,
    "due_end": 3, "ends_soon": 3, "running": 3, "done": 3,
}
RENTAL_SCENARIOS = {
    "due": 30, "due_soon": 20, "later": 15, "shipped": 20, "failed": 7, "half_done": 8,
}
# Share of the expected window already elapsed, per processing scenario: warnings fire at
# 80/90/95 % of the time used while the progress (drawn at 5-60 %) lags behind.
TIME_FRACTIONS = {
    "warn_95": (0.955, 0.995), "warn_90": (0.905, 0.945), "warn_80": (0.805, 0.895),
    "on_track": (0.05, 0.75), "overdue": (1.05, 1.6),
}
# (min, max) per metric; CO2 has no lower bound (NULL), as real setpoints often do.
SETPOINTS = {
    Metric.TEMPERATURE: (18.0, 26.0), Metric.HUMIDITY: (45.0, 65.0), Metric.CO2: (None, 1200.0),
}
# fmt: on
TYPICAL = {Metric.TEMPERATURE: (22.0, 1.2), Metric.HUMIDITY: (55.0, 3.0), Metric.CO2: (800.0, 90.0)}

USERS = [("admin", True), ("alice", False), ("bob", False)]
VERBS = ["Review", "Update", "Inspect", "Calibrate", "Audit", "Prepare", "Clean", "Order"]
OBJECTS = ["invoices", "sensors", "inventory", "contracts", "HVAC filters", "backups", "labels"]
PHASES = ["Design", "Procurement", "Build", "Testing", "Rollout", "Review", "Handover"]
ITEMS = ["Camera kit", "Tent 4p", "Projector", "Drone", "E-bike", "Sound system", "Kayak"]
CUSTOMERS = ["Li Wei", "Zhang Min", "Ana Souza", "Tom Becker", "Priya Nair", "Kenji Sato"]
ROOMS = ["Grow Room A", "Grow Room B", "Nursery", "Drying Room", "Seed Bank", "Lab"]

demo_cli = AppGroup("demo", help="Demo data so every periodic job has work.")


def _parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An aware ISO 8601 instant, as UTC; a value without an offset is refused."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no UTC offset (e.g. 2026-01-05T09:00:00+00:00)")
    return parsed.astimezone(UTC)


@demo_cli.command("seed")
@click.option("--tasks", "n_tasks", default=200, show_default=True, type=click.IntRange(0))
@click.option("--stages", "n_stages", default=24, show_default=True, type=click.IntRange(0))
@click.option("--rentals", "n_rentals", default=50, show_default=True, type=click.IntRange(0))
@click.option("--rooms", "n_rooms", default=4, show_default=True, type=click.IntRange(0))
@click.option("--readings-per-hour", default=12, show_default=True, type=click.IntRange(1, 3600))
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Random seed.")
@click.option("--now", callback=_parse_now, help="Anchor instant, ISO 8601 with offset.")
@click.option("--reset", is_flag=True, help="Drop and recreate every table first.")
@click.option("--if-empty", is_flag=True, help="Exit quietly (0) when data is already there.")
def seed_command(
    n_tasks: int,
    n_stages: int,
    n_rentals: int,
    n_rooms: int,
    readings_per_hour: int,
    seed: int,
    now: datetime | None,
    reset: bool,
    if_empty: bool,
) -> None:
    """Migrate the schema to head and fill it with realistic, reproducible demo data."""
    if reset and if_empty:
        raise click.UsageError("--reset and --if-empty contradict each other")
    if reset:
        # An open transaction of this session would hold locks DROP TABLE waits on (PostgreSQL).
        db.session.close()
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
    # The same path as production: Alembic migrations, never create_all().
    upgrade()
    existing = {m.__tablename__: n for m in SEEDED_MODELS if (n := _count(m))}
    if existing:
        if if_empty:
            click.echo(f"database already has data ({_describe(existing)}); not seeding")
            return
        raise click.ClickException(
            f"database is not empty ({_describe(existing)}); pass --reset to drop and "
            "recreate every table, or --if-empty to skip"
        )

    rng = random.Random(seed)
    now = now or now_utc()
    created = {"users": _insert(User, _user_rows(now))}
    user_ids = _ids(User)
    created["tasks"] = _insert(
        Task,
        (
            _task_row(rng, now, k, i, user_ids)
            for i, k in enumerate(_scenarios(rng, TASK_SCENARIOS, n_tasks))
        ),
    )
    created["notifications"] = _insert(
        Notification, _notification_rows(rng, now, user_ids, n_tasks)
    )
    created["stages"] = _insert(
        Stage,
        (
            _stage_row(rng, now, k, i)
            for i, k in enumerate(_scenarios(rng, STAGE_SCENARIOS, n_stages))
        ),
    )
    created["rentals"] = _insert(
        Rental,
        (
            _rental_row(rng, now, k, i)
            for i, k in enumerate(_scenarios(rng, RENTAL_SCENARIOS, n_rentals))
        ),
    )
    created["rooms"] = _insert(Room, _room_rows(n_rooms))
    room_ids = _ids(Room)
    created["setpoints"] = _insert(Setpoint, _setpoint_rows(room_ids))
    created["sensor_readings"] = _insert(
        SensorReading, _reading_rows(rng, now, room_ids, readings_per_hour)
    )
    db.session.commit()
    click.echo(f"seeded {_describe(created)} (seed {seed}, now {now.isoformat()})")


def _count(model: type[Any]) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


def _insert(model: type[Any], rows: Iterable[Row]) -> int:
    """Bulk-insert `rows` in chunks (bounded memory for large N); return how many."""
    total = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, INSERT_CHUNK)):
        db.session.execute(insert(model), chunk)
        total += len(chunk)
    return total


def _ids(model: type[Any]) -> list[int]:
    """Ids of the rows just inserted into an empty table, in order."""
    # Ids are never set by hand, so PostgreSQL sequences stay in step with the data.
    return list(db.session.scalars(select(model.id).order_by(model.id)))


def _scenarios(rng: random.Random, weights: dict[str, int], n: int) -> Iterator[str]:
    """Every scenario once (as far as `n` allows), then weighted draws."""
    names = list(weights)
    yield from names[:n]
    if n > len(names):
        yield from rng.choices(names, weights=list(weights.values()), k=n - len(names))


def _ago(now: datetime, rng: random.Random, low: timedelta, high: timedelta) -> datetime:
    """A whole-second instant between `low` and `high` before `now`."""
    return now - timedelta(seconds=round(rng.uniform(low.total_seconds(), high.total_seconds())))


def _user_rows(now: datetime) -> list[Row]:
    return [
        {
            "username": name,
            "email": f"{name}@example.com",
            "is_admin": admin,
            "created_at": now - timedelta(days=400),
        }
        for name, admin in USERS
    ]


def _task_row(rng: random.Random, now: datetime, kind: str, i: int, user_ids: list[int]) -> Row:
    """One task in the state `kind` describes (see TASK_SCENARIOS)."""
    day, hour = timedelta(days=1), timedelta(hours=1)
    duration = timedelta(hours=rng.randint(24, 30 * 24))
    row: Row = {
        "title": f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} #{i + 1}",
        "handler_id": rng.choice(user_ids),
        "status": TaskStatus.NEW,
        "is_periodic": False,
        "period_days": 7,
        "progress": 0,
        "time_progress": 0.0,
        "actual_start": None,
        "actual_end": None,
        "completed_at": None,
        "closed_at": None,
    }
    if kind == "new":
        start = now + timedelta(hours=rng.randint(1, 240))
        created = _ago(now, rng, hour, 5 * day)
        row.update(expected_start=start, expected_end=start + duration, created_at=created)
    elif kind in TIME_FRACTIONS:
        fraction = rng.uniform(*TIME_FRACTIONS[kind])
        start = now - duration * fraction
        on_time = kind in ("on_track", "overdue")
        progress = fraction * 100 + rng.uniform(-10, 10) if on_time else rng.uniform(5, 60)
        row.update(
            status=TaskStatus.PROCESSING,
            expected_start=start,
            expected_end=start + duration,
            actual_start=start,
            progress=max(0, min(99, round(progress))),
            time_progress=round(min(fraction, 1.0) * 100, 2),
            created_at=start - 2 * day,
        )
    else:
        periodic = kind.startswith("periodic")
        period = rng.choice([1, 7, 7, 14, 30]) if periodic else 7
        if kind.startswith("periodic_due"):  # finished at least one period ago: reset is due
            finished = _ago(now, rng, timedelta(days=period) + hour, timedelta(days=period + 3))
        elif kind == "periodic_recent":
            finished = _ago(now, rng, hour, timedelta(days=period) * 0.8)
        elif kind == "closed_old":  # beyond the 90-day retention of cleanup_old_data
            finished = _ago(now, rng, 91 * day, 400 * day)
        else:
            finished = _ago(now, rng, hour, 60 * day)
        closed = "closed" in kind
        completed_at = finished - timedelta(hours=rng.randint(1, 48)) if closed else finished
        row.update(
            status=TaskStatus.CLOSED if closed else TaskStatus.COMPLETED,
            is_periodic=periodic,
            period_days=period,
            progress=100,
            time_progress=100.0,
            expected_start=completed_at - duration,
            expected_end=completed_at,
            actual_start=completed_at - duration,
            actual_end=completed_at,
            completed_at=completed_at,
            closed_at=finished if closed else None,
            created_at=completed_at - duration - day,
        )
    row["updated_at"] = max(
        t
        for t in (row["created_at"], row["actual_start"], row["completed_at"], row["closed_at"])
        if t is not None
    )
    return row


def _notification_rows(
    rng: random.Random, now: datetime, user_ids: list[int], n_tasks: int
) -> Iterator[Row]:
    """Unread recent ones and read old ones (some beyond the 180-day retention)."""
    kinds = list(NotificationKind)
    for i in range(max(len(kinds), n_tasks // 20)):
        kind = kinds[i % len(kinds)]
        state = ("unread", "read_old", "read_recent")[i % 3]
        created = (
            _ago(now, rng, timedelta(days=181), timedelta(days=400))
            if state == "read_old"
            else _ago(now, rng, timedelta(minutes=5), timedelta(days=20))
        )
        yield {
            "user_id": rng.choice(user_ids),
            "kind": kind,
            "title": f"{kind.replace('_', ' ').capitalize()} #{i + 1}",
            "body": f"Demo {kind} notification.",
            "is_read": state != "unread",
            "created_at": created,
            "read_at": None if state == "unread" else created + timedelta(hours=2),
        }


def _stage_row(rng: random.Random, now: datetime, kind: str, i: int) -> Row:
    """One stage; `due_*` and `missed` ones change at the next update_stage_status run."""
    minute, day = timedelta(minutes=1), timedelta(days=1)
    soon = now + timedelta(seconds=rng.randint(60, 15 * 60))
    status = {
        "due_end": StageStatus.ACTIVE,
        "ends_soon": StageStatus.ACTIVE,
        "running": StageStatus.ACTIVE,
        "done": StageStatus.COMPLETED,
    }.get(kind, StageStatus.PENDING)
    if kind == "due_start":
        start, end = _ago(now, rng, minute, 30 * minute), now + rng.randint(1, 30) * day
    elif kind == "starts_soon":
        start, end = soon, soon + rng.randint(1, 30) * day
    elif kind == "future":
        start = now + rng.randint(1, 30) * day
        end = start + rng.randint(1, 30) * day
    elif kind == "missed":
        end = _ago(now, rng, minute, day)
        start = end - rng.randint(1, 10) * day
    elif kind == "due_end":
        start, end = now - rng.randint(2, 30) * day, _ago(now, rng, minute, 30 * minute)
    elif kind == "ends_soon":
        start, end = now - rng.randint(2, 30) * day, soon
    elif kind == "running":
        start, end = now - rng.randint(1, 10) * day, now + rng.randint(1, 30) * day
    else:  # done
        end = _ago(now, rng, day, 90 * day)
        start = end - rng.randint(1, 30) * day
    # When it last changed: activation, completion, or creation for a pending stage.
    last_change = {StageStatus.ACTIVE: start, StageStatus.COMPLETED: end}
    updated = min(now, last_change.get(status, _ago(now, rng, day, 2 * day)))
    return {
        "name": f"{PHASES[i % len(PHASES)]} phase {i + 1}",
        "status": status,
        "start_date": start,
        "end_date": end,
        "updated_at": updated,
    }


def _rental_row(rng: random.Random, now: datetime, kind: str, i: int) -> Row:
    """One rental; `due` ones (and `half_done`, a crashed shipment) are for the next run."""
    minute, hour, day = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
    row: Row = {
        "item_name": f"{rng.choice(ITEMS)} #{i + 1}",
        "customer": rng.choice(CUSTOMERS),
        "status": RentalStatus.PENDING,
        "claimed_by": None,
        "claimed_at": None,
        "tracking_number": None,
        "carrier_booked_at": None,
        "marketplace_notified_at": None,
        "shipped_at": None,
        "last_error": None,
        "attempts": 0,
    }
    if kind == "due":
        row["ship_at"] = _ago(now, rng, 0 * minute, 20 * minute)
    elif kind == "due_soon":
        row["ship_at"] = now + timedelta(seconds=rng.randint(60, 15 * 60))
    elif kind == "later":
        row["ship_at"] = now + timedelta(seconds=rng.randint(3600, 7 * 86400))
    else:
        ship_at = _ago(now, rng, 2 * hour, 30 * day)
        claimed = ship_at + timedelta(seconds=rng.randint(1, 300))
        row.update(ship_at=ship_at, claimed_by=f"worker-{rng.randint(1, 4)}", attempts=1)
        row["claimed_at"] = claimed
        if kind in ("shipped", "half_done"):
            row.update(
                tracking_number=f"CW{rng.randrange(10**9, 10**10)}",
                carrier_booked_at=claimed + minute,
            )
        if kind == "shipped":
            row.update(
                status=RentalStatus.SHIPPED,
                marketplace_notified_at=claimed + 2 * minute,
                shipped_at=claimed + 2 * minute,
            )
        elif kind == "half_done":  # its worker died after booking the carrier: resume, never rebook
            claimed = _ago(now, rng, hour, 2 * hour)  # ship_at is at least 2 h ago
            row.update(status=RentalStatus.SHIPPING, claimed_at=claimed)
            row["carrier_booked_at"] = claimed + minute
        else:
            row.update(
                status=RentalStatus.FAILED,
                attempts=3,
                claimed_by=None,
                last_error="carrier API timed out after 10 s (3 attempts)",
            )
    return row


def _room_rows(n: int) -> list[Row]:
    return [{"name": ROOMS[i] if i < len(ROOMS) else f"Room {i + 1:03d}"} for i in range(n)]


def _setpoint_rows(room_ids: list[int]) -> Iterator[Row]:
    for room_id in room_ids:
        for metric, (low, high) in SETPOINTS.items():
            yield {"room_id": room_id, "metric": metric, "min_value": low, "max_value": high}


def _reading_rows(
    rng: random.Random, now: datetime, room_ids: list[int], per_hour: int
) -> Iterator[Row]:
    """Readings over the last READING_HOURS, a few outside setpoints, one in the last hour."""
    step = timedelta(seconds=3600 / per_hour)
    count = READING_HOURS * per_hour
    for n_room, room_id in enumerate(room_ids):
        for metric, (mean, sd) in TYPICAL.items():
            high = SETPOINTS[metric][1] or mean
            for k in range(count):
                value = rng.gauss(mean, sd)
                if rng.random() < EXCURSION_RATE or (n_room == 0 and k == count - 1):
                    value = high + abs(rng.gauss(0, sd)) + sd  # the last one: an alert is due
                yield {
                    "room_id": room_id,
                    "metric": metric,
                    "value": round(value, 2),
                    "recorded_at": now - step * (count - 1 - k),
                }
