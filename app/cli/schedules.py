"""`flask --app app schedules list|next|run|backfill|pause|resume|history|add|update|delete`: the API's
actions from a shell. add/update take the API's JSON spec from --json or --file (`-`: stdin)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

import click

from app.cli.group import CommandGroup
from app.ops.audit_log import audited, change_detail
from app.ops.display import local_time, relative, schedule_json, short_duration, trigger_words
from app.services.backfill import backfill, describe
from app.services.runtime_schedules import InvalidSchedule, RuntimeSchedules
from app.services.schedules import MAX_HISTORY, ScheduleActionError, ScheduleService, ScheduleView
from cronwork.audit import Action, Source
from cronwork.backfill import BackfillError
from cronwork.store import ScheduleSource

schedules_cli = CommandGroup(
    "schedules",
    help="Schedules: list, next fire times, run, pause, resume, ledger; runtime add, update, delete.",
)
SPEC_HELP = (
    "the schedule as JSON: the fields of a [schedules.<name>] table of schedule.toml, e.g. "
    '\'{"name": "adhoc", "func": "jobs.system.health_check", "every": "10m"}\''
)


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused action (unknown name, bad reason, not runnable, invalid schedule) exits non-zero
    with its message; an invalid schedule's problems one per line."""
    try:
        yield
    except InvalidSchedule as exc:
        raise click.ClickException("invalid schedule:\n  " + "\n  ".join(exc.problems)) from None
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
    if v.source is ScheduleSource.RUNTIME:
        parts.append("runtime, name also declared in the file" if v.clash else "runtime")
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


@schedules_cli.command("backfill")
@click.argument("name")
@click.option(
    "--from", "start", required=True, help="ISO-8601 start (included); no offset: the schedule's zone"
)
@click.option("--to", "end", required=True, help="ISO-8601 end (included), not in the future")
@click.option("--dry-run", is_flag=True, help="list the ticks and which already ran; enqueue nothing")
def backfill_command(name: str, start: str, end: str, dry_run: bool) -> None:
    """Enqueue each tick of NAME from --from to --to once, with its own scheduled_for."""
    with _refusals(), audited(Source.CLI, Action.BACKFILL, schedule=name) as note:
        spec = ScheduleService.for_app().registered_spec(name)
        try:
            result = backfill(spec, start, end, dry_run=dry_run)
        except BackfillError as exc:
            raise click.ClickException(str(exc)) from None
        note.detail = describe(start, end, result)
    if dry_run:
        for tick in result.ticks:
            taken = result.taken.get(tick)
            when = datetime.fromtimestamp(tick, spec.zone).isoformat()
            click.echo(f"{when}\t{'already ' + taken if taken else 'would enqueue'}")
    click.echo(f"{name}: {describe(start, end, result)}")


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


def _spec_fields(spec_json: str | None, spec_file: IO[str] | None) -> dict[str, Any]:
    """The JSON object of --json or --file (exactly one)."""
    if (spec_json is None) == (spec_file is None):
        raise click.UsageError("give the schedule with exactly one of --json and --file")
    text = spec_file.read() if spec_file is not None else str(spec_json)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--json/--file") from None
    if not isinstance(data, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--json/--file")
    return data


def _spec_options(command: Any) -> Any:
    command = click.option(
        "--file", "spec_file", type=click.File("r"), help="a file holding that JSON (- for stdin)"
    )(command)
    return click.option("--json", "spec_json", help=SPEC_HELP)(command)


@schedules_cli.command("add")
@_spec_options
def add_command(spec_json: str | None, spec_file: IO[str] | None) -> None:
    """Add a runtime schedule (validated as schedule.toml; a sync never touches it)."""
    fields = _spec_fields(spec_json, spec_file)
    name = fields.get("name")
    with _refusals(), audited(Source.CLI, Action.SCHEDULE_ADD) as note:
        note.schedule = name if isinstance(name, str) and name else None
        change = RuntimeSchedules.for_app().add(fields)
        note.detail = change_detail(change)
    click.echo(f"added runtime schedule {change.spec.name}: {change_detail(change)}")


@schedules_cli.command("update")
@click.argument("name")
@_spec_options
def update_command(name: str, spec_json: str | None, spec_file: IO[str] | None) -> None:
    """Replace runtime schedule NAME with the JSON spec (all of it; its name may be left out)."""
    fields = _spec_fields(spec_json, spec_file)
    with _refusals(), audited(Source.CLI, Action.SCHEDULE_UPDATE, schedule=name) as note:
        change = RuntimeSchedules.for_app().update(name, fields)
        note.detail = change_detail(change)
    click.echo(f"updated runtime schedule {name}: {change_detail(change)}")


@schedules_cli.command("delete")
@click.argument("name")
def delete_command(name: str) -> None:
    """Delete runtime schedule NAME: it stops firing; its ledger stays."""
    with _refusals(), audited(Source.CLI, Action.SCHEDULE_DELETE, schedule=name):
        RuntimeSchedules.for_app().delete(name)
    click.echo(f"deleted runtime schedule {name}")
