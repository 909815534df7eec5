"""Server-rendered ops pages: the schedules list, one schedule's ledger, login; actions as POST forms."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from app.extensions import cronwork
from app.ops import pages_blueprint
from app.ops.audit_log import audited, record, schedule_of_job
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
