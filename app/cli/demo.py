"""`flask demo seed`: migrate the schema, then demo data so every periodic job has work."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask import current_app
from flask_migrate import upgrade

from app.cli.group import CommandGroup
from app.demo.seed import DEFAULT_SEED, describe, drop_all_tables, existing_counts, seed_demo
from app.extensions import cronwork
from app.models import now_utc
from app.readiness import wait_for_database

demo_cli = CommandGroup("demo", help="Demo data so every periodic job has work.")


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
    # A database that cannot be used is one line naming it, at once when no wait can help.
    wait_for_database(current_app, cronwork.settings().startup_timeout)
    if reset:
        drop_all_tables()
    # The same path as production: Alembic migrations, never create_all().
    upgrade()
    existing = existing_counts()
    if existing:
        if if_empty:
            click.echo(f"database already has data ({describe(existing)}); not seeding")
            return
        raise click.ClickException(
            f"database is not empty ({describe(existing)}); pass --reset to drop and "
            "recreate every table, or --if-empty to skip"
        )

    now = now or now_utc()
    created = seed_demo(
        seed,
        now,
        n_tasks=n_tasks,
        n_stages=n_stages,
        n_rentals=n_rentals,
        n_rooms=n_rooms,
        readings_per_hour=readings_per_hour,
    )
    click.echo(f"seeded {describe(created)} (seed {seed}, now {now.isoformat()})")
