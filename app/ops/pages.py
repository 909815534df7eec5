"""Server-rendered ops pages: the schedules list, one schedule's ledger, login; actions as POST forms;
the form of a runtime schedule (add, edit) and its delete."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from app.extensions import cronwork
from app.ops import pages_blueprint
from app.ops.audit_log import audited, change_detail, record, schedule_of_job
from app.ops.auth import SESSION_USER, credentials_ok, csrf_token, log_in, log_out, safe_next
from app.ops.charts import duration, fire_axis, series_chart, start_lag
from app.ops.display import (
    local_time,
    mark_class,
    marks,
    relative,
    short_duration,
    start_latency,
    trigger_words,
)
from app.ops.limits import note_failure
from app.services.failed import RequeueError, list_failed, requeue
from app.services.runtime_schedules import InvalidSchedule, RuntimeChange, RuntimeSchedules, WritersBusy
from app.services.schedules import FILTERS, PAGE_SIZE, ScheduleActionError, ScheduleService, UnknownSchedule
from cronwork import audit
from cronwork.audit import Action, Outcome, Source
from cronwork.auth_failures import Scheme

log = logging.getLogger(__name__)

DETAIL_HISTORY = 100
# Columns of the schedules list's outcome grid: the newest runs of each schedule, read with the
# rest of the page in its one bounded batch (cronwork.summary.newest_runs).
GRID_RUNS = 24
AUDIT_SHOWN = 20  # newest audit entries on a schedule's page
ACTIONS = {"pause": Action.PAUSE, "resume": Action.RESUME, "run": Action.RUN_NOW}
# What the runtime schedule form shows before anything is typed.
SPEC_EXAMPLE = '{\n  "func": "jobs.system.health_check",\n  "every": "10m"\n}'


@pages_blueprint.context_processor
def helpers() -> dict[str, Any]:
    """What the ops templates use besides their own variables (also for the error pages)."""
    return {
        "csrf_token": csrf_token,
        "local_time": local_time,
        "relative": relative,
        "short_duration": short_duration,
        "start_latency": start_latency,
        "trigger_words": trigger_words,
        "mark_class": mark_class,
        "marks": marks,
        "grid_runs": GRID_RUNS,
        "series_chart": series_chart,
        "fire_axis": fire_axis,
        "duration": duration,
        "start_lag": start_lag,
        "now": datetime.now(UTC),
    }


@pages_blueprint.get("/")
def index() -> ResponseReturnValue:
    """The schedules, a page at a time, with their next fire times and last runs as coloured marks;
    `q` filters by name, `status` by status (or "failing")."""
    number = request.args.get("page", 1, type=int) or 1
    query = request.args.get("q", "")[:100]
    status = request.args.get("status", "")
    status = status if status in FILTERS else ""
    page = ScheduleService.for_app().page(number, PAGE_SIZE, query=query, status=status, recent=GRID_RUNS)
    return render_template("ops/schedules.html", page=page, query=query, status_filter=status)


@pages_blueprint.get("/schedules/<name>")
def schedule(name: str) -> ResponseReturnValue:
    """One schedule: definition, next fire times, ledger with errors, failed runs."""
    service = ScheduleService.for_app()
    try:
        view = service.get(name, recent=DETAIL_HISTORY)
    except UnknownSchedule:
        abort(404, f"unknown schedule {name!r}")
    view.next_fire_times = service.next_fires(name, 10)
    retried = [r["tick"] for r in view.recent if r.get("attempt", 1) > 1]
    attempts = {tick: service.ledger.attempts(name, tick) for tick in retried}
    failed = list_failed(cronwork.redis(), name)
    entries = audit.recent(cronwork.redis(), cronwork.keys(), name, AUDIT_SHOWN)
    return render_template("ops/schedule.html", view=view, attempts=attempts, failed=failed, audit=entries)


# Not under /schedules/: a runtime schedule may be called "new".
@pages_blueprint.route("/runtime-schedules/new", methods=["GET", "POST"])
def new_schedule() -> ResponseReturnValue:
    """Add a runtime schedule: a name and the JSON of its schedule.toml table."""
    if request.method == "GET":
        return _runtime_form(None, "", SPEC_EXAMPLE)
    name, text = request.form.get("name", "").strip(), request.form.get("spec", "")
    try:
        with audited(Source.PAGE, Action.SCHEDULE_ADD, schedule=name or None) as note:
            change = RuntimeSchedules.for_app().add({**_spec_object(text), "name": name})
            note.detail = change_detail(change)
    except ScheduleActionError as exc:  # InvalidSchedule, ScheduleConflict, WritersBusy
        return _runtime_form(None, name, text, exc)
    return _saved(change, "Added")


@pages_blueprint.route("/schedules/<name>/edit", methods=["GET", "POST"])
def edit_schedule(name: str) -> ResponseReturnValue:
    """Replace a runtime schedule with the form's JSON (all of it)."""
    runtime = RuntimeSchedules.for_app()
    if request.method == "GET":
        submitted = runtime.submitted(name)
        if submitted is None:
            abort(404, f"no runtime schedule {name!r}")
        return _runtime_form(name, name, json.dumps(submitted, indent=2, ensure_ascii=False))
    text = request.form.get("spec", "")
    try:
        with audited(Source.PAGE, Action.SCHEDULE_UPDATE, schedule=name) as note:
            change = runtime.update(name, _spec_object(text))
            note.detail = change_detail(change)
    except UnknownSchedule:
        abort(404, f"no runtime schedule {name!r}")
    except ScheduleActionError as exc:
        return _runtime_form(name, name, text, exc)
    return _saved(change, "Updated")


@pages_blueprint.post("/schedules/<name>/delete")
def delete_schedule(name: str) -> ResponseReturnValue:
    """Delete a runtime schedule: it stops firing; its ledger stays readable on its page."""
    try:
        with audited(Source.PAGE, Action.SCHEDULE_DELETE, schedule=name):
            RuntimeSchedules.for_app().delete(name)
    except UnknownSchedule:
        abort(404, f"no runtime schedule {name!r}")
    except ScheduleActionError as exc:
        flash(f"Delete {name}: {exc}", "error")
        return redirect(url_for(".schedule", name=name), code=303)
    flash(f"Deleted the runtime schedule {name}; its ledger stays.", "ok")
    return redirect(url_for(".index"), code=303)


def _spec_object(text: str) -> dict[str, Any]:
    """The form's JSON object; InvalidSchedule naming what is wrong with it otherwise."""
    try:
        data = json.loads(text or "{}")
    except ValueError as exc:
        raise InvalidSchedule([f"spec: not JSON: {exc}"]) from None
    except RecursionError:
        raise InvalidSchedule(["spec: not JSON: nested too deeply"]) from None
    if not isinstance(data, dict):
        raise InvalidSchedule(["spec: expected a JSON object"])
    return data


def _runtime_form(
    editing: str | None, name: str, spec: str, error: ScheduleActionError | None = None
) -> ResponseReturnValue:
    """The add or edit form, with what was typed and, after a refusal, why (400, or 409/503)."""
    problems = error.problems if isinstance(error, InvalidSchedule) else [str(error)] if error else []
    status = 200 if error is None else 400 if isinstance(error, InvalidSchedule) else 409
    status = 503 if isinstance(error, WritersBusy) else status
    page = render_template("ops/runtime_form.html", editing=editing, name=name, spec=spec, problems=problems)
    return page, status


def _saved(change: RuntimeChange, verb: str) -> ResponseReturnValue:
    flash(f"{verb} the runtime schedule {change.spec.name}.", "ok")
    return redirect(url_for(".schedule", name=change.spec.name), code=303)


def _act(name: str, action: str) -> ResponseReturnValue:
    """Run one action from a form, flash its outcome, go back where the form was."""
    service = ScheduleService.for_app()
    try:
        with audited(Source.PAGE, ACTIONS[action], schedule=name) as note:
            if action == "pause":
                note.detail = service.pause(name, request.form.get("reason", ""))["reason"]
                flash(f"Paused {name}.", "ok")
            elif action == "resume":
                was_paused = service.resume(name)
                note.detail = "" if was_paused else "was not paused"
                flash(f"Resumed {name}." if was_paused else f"{name} was not paused.", "ok")
            else:
                run = service.run_now(name)
                note.target = run.job_id
                flash(f"Enqueued a manual run of {name} ({run.job_id}).", "ok")
    except UnknownSchedule:
        abort(404, f"unknown schedule {name!r}")
    except ScheduleActionError as exc:  # InvalidReason, NotRunnable
        flash(f"{action.capitalize()} {name}: {exc}", "error")
    log.info("ops action=%s schedule=%s user=%s", action, name, session.get(SESSION_USER, "basic"))
    return redirect(safe_next(request.form.get("next"), url_for(".index")), code=303)


@pages_blueprint.post("/schedules/<name>/pause")
def pause(name: str) -> ResponseReturnValue:
    """Pause with the form's reason."""
    return _act(name, "pause")


@pages_blueprint.post("/schedules/<name>/resume")
def resume(name: str) -> ResponseReturnValue:
    """Resume."""
    return _act(name, "resume")


@pages_blueprint.post("/schedules/<name>/run")
def run(name: str) -> ResponseReturnValue:
    """Enqueue a manual run."""
    return _act(name, "run")


@pages_blueprint.post("/failed/<job_id>/requeue")
def requeue_failed(job_id: str) -> ResponseReturnValue:
    """Requeue one failed run."""
    try:
        with audited(Source.PAGE, Action.REQUEUE, schedule=schedule_of_job(job_id), target=job_id):
            run = requeue(cronwork.redis(), cronwork.keys(), job_id)
        flash(f"Requeued {run.job_id}.", "ok")
    except RequeueError as exc:
        flash(f"Requeue: {exc}", "error")
    return redirect(safe_next(request.form.get("next"), url_for(".index")), code=303)


@pages_blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Form login; the session cookie then carries the user (HTTP Basic works without it)."""
    target = safe_next(request.values.get("next"), url_for(".index"))
    if request.method == "GET":
        return render_template("ops/login.html", next=target, failed=False)
    user = request.form.get("username", "")
    if credentials_ok(user, request.form.get("password", "")):
        log_in(user)
        log.info("ops login user=%s remote=%s", user, request.remote_addr)
        record(Source.PAGE, Action.LOGIN, actor=user)
        return redirect(target, code=303)
    note_failure(Scheme.FORM, user)  # logged, counted, deducted from the windows (app.ops.limits)
    record(Source.PAGE, Action.LOGIN_FAILED, actor=user, outcome=Outcome.REFUSED, detail="wrong credentials")
    return render_template("ops/login.html", next=target, failed=True), 401


@pages_blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session, server-side: a copy of the cookie no longer works."""
    record(Source.PAGE, Action.LOGOUT)
    log_out()
    return redirect(url_for(".login"), code=303)
