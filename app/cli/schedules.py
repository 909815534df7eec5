"""`flask --app app schedules ...`: what is registered and what happened to each tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import get_redis
from scheduler_boot.keys import RQ_SCHEDULER_SET, Keys
from scheduler_boot.ledger import Ledger

schedules_cli = AppGroup("schedules", help="Registered schedules and their tick ledger.")


def _keys() -> Keys:
    return Keys(current_app.config["CRONWORK_PREFIX"])


@schedules_cli.command("list")
def list_schedules() -> None:
    """Registered schedules with their next fire time (UTC) and pause state."""
    redis, keys = get_redis(), _keys()
    names = sorted(k.decode() for k in redis.hkeys(keys.definitions))
    paused = {k.decode() for k in redis.hkeys(keys.paused)}
    for name in names:
        score = redis.zscore(RQ_SCHEDULER_SET, keys.template_id(name))
        when = datetime.fromtimestamp(score, UTC).isoformat() if score else "-"
        click.echo(f"{name}\t{when}\t{'paused' if name in paused else 'active'}")


@schedules_cli.command("history")
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="print a JSON list, newest first")
def history(name: str, limit: int, as_json: bool) -> None:
    """The ledger of one schedule: one record per tick, newest first."""
    redis, keys = get_redis(), _keys()
    if not redis.hexists(keys.definitions, name) and not redis.exists(keys.ledger(name)):
        raise click.ClickException(f"unknown schedule {name!r}")
    records = Ledger(redis, keys).history(name, limit)
    for record in records:
        record["tick_iso"] = datetime.fromtimestamp(record["tick"], UTC).isoformat()
    if as_json:
        click.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    for r in records:
        click.echo(f"{r['tick_iso']}\t{r.get('state', '?')}\t{r.get('job_id', '-')}")
