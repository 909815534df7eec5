"""`flask --app app failed list|requeue`: the failed runs an operator can act on."""

from __future__ import annotations

import json

import click

from app.cli.group import CommandGroup
from app.extensions import cronwork
from app.ops.audit_log import audited, schedule_of_job
from app.services.failed import RequeueError, list_failed, requeue, requeue_all
from cronwork.audit import Action, Source

failed_cli = CommandGroup("failed", help="Failed runs: list and requeue.")


@failed_cli.command("list")
@click.option("--schedule", help="only this schedule's runs")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def list_command(schedule: str | None, as_json: bool) -> None:
    """Failed runs of every queue, newest first."""
    runs = list_failed(cronwork.redis(), schedule)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in runs], indent=2))
        return
    for r in runs:
        click.echo(f"{r.job_id}\t{r.schedule or '-'}\t{r.scheduled_for or '-'}\t{r.error_type}: {r.error}")
    click.echo(f"{len(runs)} failed run(s)", err=True)


@failed_cli.command("requeue")
@click.argument("job_id", required=False)
@click.option("--all", "everything", is_flag=True, help="requeue every failed run")
@click.option("--schedule", help="with --all: only this schedule's runs")
def requeue_command(job_id: str | None, everything: bool, schedule: str | None) -> None:
    """Requeue one failed run (JOB_ID) or all of them (--all [--schedule NAME])."""
    if bool(job_id) == everything:
        raise click.UsageError("give either JOB_ID or --all")
    redis, keys = cronwork.redis(), cronwork.keys()
    action, named = (Action.REQUEUE, schedule_of_job(job_id)) if job_id else (Action.REQUEUE_ALL, schedule)
    try:
        with audited(Source.CLI, action, schedule=named, target=job_id) as note:
            runs = [requeue(redis, keys, job_id)] if job_id else requeue_all(redis, keys, schedule)
            note.detail = f"{len(runs)} requeued"
    except RequeueError as exc:
        raise click.ClickException(str(exc)) from None
    for r in runs:
        click.echo(f"requeued {r.job_id} ({r.schedule or '-'} @ {r.scheduled_for or '-'})")
