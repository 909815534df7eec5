"""`flask --app app schedules list|next|run|pause|resume|history`: the API's actions from a shell."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from app.cli.group import CommandGroup
from app.ops.audit_log import audited
from app.ops.display import local_time, relative, schedule_json, short_duration, trigger_words
from app.services.schedules import MAX_HISTORY, ScheduleActionError, ScheduleService, ScheduleView
from cronwork.audit import Action, Source

schedules_cli = CommandGroup(
    "schedules", help="Schedules: list, next fire times, run, pause, resume, ledger."
)


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused action (unknown name, bad reason, not runnable) exits non-zero with its message."""
    try:
        yield
    except ScheduleActionError as exc:
        raise click.ClickException(str(exc)) from None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@schedules_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON list")
def list_schedules(as_json: bool) -> None:
    """Every schedule: trigger, zone, next fire, status, last run, failure streak."""
    views = ScheduleService.for_app().overview(recent=1)
    if as_json:
        _echo_json([schedule_json(v) for v in views])
        return
    for v in views:
        click.echo(_list_line(v))


def _list_line(v: ScheduleView) -> str:
    zone = v.spec.timezone
    parts = [v.name, f"{trigger_words(v.spec.trigger)} ({zone})"]
    first = v.next_fire_times[0] if v.next_fire_times else None
    parts.append(f"next {local_time(first, zone)} ({relative(first)})" if first else "next -")
    parts.append(f"paused: {v.paused['reason']}" if v.paused else "active" if v.registered else "disabled")
    last = v.last_run
    if last:
        parts.append(f"last {last['state']} {relative(last['at'])} {short_duration(last['duration'])}")
    else:
        parts.append("never ran")
    if v.consecutive_failures:
        parts.append(f"{v.consecutive_failures} failures in a row")
    return "\t".join(parts)


@schedules_cli.command("next")
@click.argument("name")
@click.argument("count", default=5, type=click.IntRange(1, 100))
def next_command(name: str, count: int) -> None:
    """The next COUNT fire times of NAME (UTC, then the schedule's wall time)."""
    service = ScheduleService.for_app()
    with _refusals():
        zone = service.get(name, recent=0).spec.timezone
        times = service.next_fires(name, count)
    for t in times:
        click.echo(f"{t.isoformat()}\t{local_time(t, zone)}")


@schedules_cli.command("run")
@click.argument("name")
def run_command(name: str) -> None:
    """Enqueue a manual run of NAME now (the ledger records it as manual)."""
    with _refusals(), audited(Source.CLI, Action.RUN_NOW, schedule=name) as note:
        run = ScheduleService.for_app().run_now(name)
        note.target = run.job_id
    click.echo(f"enqueued {run.job_id} on queue {run.queue}")


@schedules_cli.command("pause")
@click.argument("name")
@click.option("--reason", required=True, help="why (shown on the page and in the API)")
def pause_command(name: str, reason: str) -> None:
    """Pause NAME: its ticks are recorded as paused until resumed."""
    with _refusals(), audited(Source.CLI, Action.PAUSE, schedule=name) as note:
        note.detail = ScheduleService.for_app().pause(name, reason)["reason"]
    click.echo(f"paused {name}")


@schedules_cli.command("resume")
@click.argument("name")
def resume_command(name: str) -> None:
    """Resume NAME."""
    with _refusals(), audited(Source.CLI, Action.RESUME, schedule=name) as note:
        was_paused = ScheduleService.for_app().resume(name)
        note.detail = "" if was_paused else "was not paused"
    click.echo(f"resumed {name}" if was_paused else f"{name} was not paused")


@schedules_cli.command("history")
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, MAX_HISTORY))
@click.option("--json", "as_json", is_flag=True, help="print a JSON list, newest first")
def history(name: str, limit: int, as_json: bool) -> None:
    """The ledger of one schedule: one record per tick, newest first."""
    with _refusals():
        records = ScheduleService.for_app().history(name, limit)
    if as_json:
        _echo_json(records)
        return
    for r in records:
        click.echo(_history_line(r))


def _history_line(r: dict[str, Any]) -> str:
    parts = [r["tick_iso"], str(r.get("state", "?")), str(r.get("job_id", "-"))]
    if "duration" in r:
        parts.append(short_duration(r["duration"]))
    if r.get("error"):
        parts.append(f"{r.get('error_type', 'Error')}: {r['error']}")
    return "\t".join(parts)
