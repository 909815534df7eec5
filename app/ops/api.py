"""The ops JSON API under /api: schedules, their ledger, actions, runtime schedules, and failed
runs (Bearer token)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from typing import Any, NoReturn

from flask import jsonify, request, url_for
from flask.typing import ResponseReturnValue

from app.extensions import cronwork
from app.ops import api_blueprint
from app.ops.audit_log import audited, change_detail, schedule_of_job
from app.ops.display import schedule_json
from app.services.backfill import backfill as backfill_schedule
from app.services.backfill import describe
from app.services.failed import RequeueError, list_failed, requeue, requeue_all
from app.services.runtime_schedules import (
    InvalidSchedule,
    RuntimeChange,
    RuntimeSchedules,
    ScheduleConflict,
    WritersBusy,
)
from app.services.schedules import (
    MAX_HISTORY,
    InvalidReason,
    NotRunnable,
    RateLimited,
    ScheduleService,
    UnknownSchedule,
)
from app.services.shipments import RetryRefused, UnknownRental, retry_rental
from cronwork import audit
from cronwork.audit import Action, Source
from cronwork.backfill import BackfillError

MAX_BODY = 16 * 1024  # bytes of a JSON request body
MAX_NEXT = 100
SCHEDULE_AUDIT = 20  # newest audit entries in GET /api/schedules/<name>


class ApiError(Exception):
    """An error answered as {"error": message} with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@api_blueprint.errorhandler(ApiError)
def _api_error(exc: ApiError) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), exc.status


@api_blueprint.errorhandler(UnknownSchedule)
def _unknown(exc: UnknownSchedule) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 404


@api_blueprint.errorhandler(NotRunnable)
def _not_runnable(exc: NotRunnable) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 409


@api_blueprint.errorhandler(RateLimited)
def _rate_limited(exc: RateLimited) -> ResponseReturnValue:
    """429 with when the next run is allowed, in the body and as Retry-After (whole seconds)."""
    wait = max(math.ceil(exc.retry_at.timestamp() - time.time()), 1)
    body = {"error": str(exc), "retry_at": exc.retry_at.isoformat()}
    return jsonify(body), 429, {"Retry-After": str(wait)}


@api_blueprint.errorhandler(InvalidReason)
def _bad_reason(exc: InvalidReason) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 400


@api_blueprint.errorhandler(InvalidSchedule)
def _bad_schedule(exc: InvalidSchedule) -> ResponseReturnValue:
    """The usual {"error"} (every problem on one line), and the problems one by one."""
    return jsonify({"error": str(exc), "problems": exc.problems}), 400


@api_blueprint.errorhandler(ScheduleConflict)
def _conflict(exc: ScheduleConflict) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 409


@api_blueprint.errorhandler(WritersBusy)
def _busy(exc: WritersBusy) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 503, {"Retry-After": "5"}


def _fail(status: int, message: str) -> NoReturn:
    raise ApiError(status, message)


def _body(allowed: frozenset[str] | None) -> dict[str, Any]:
    """The JSON object of the request (empty body → {}); fields not in `allowed` are refused
    (None: the caller validates the fields itself)."""
    if request.content_length and request.content_length > MAX_BODY:
        _fail(413, f"request body over {MAX_BODY} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        _fail(413, f"request body over {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        _fail(415, "send the body as application/json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        _fail(400, "invalid JSON body")
    except RecursionError:
        # `[[[[…]]]]` a few thousand deep fits in MAX_BODY and exhausts the decoder's
        # recursion limit: a client error, not a 500 (issue 13).
        _fail(400, "invalid JSON body: nested too deeply")
    if not isinstance(data, dict):
        _fail(400, "the JSON body must be an object")
    unknown = sorted(set(data) - allowed) if allowed is not None else []
    if unknown:
        _fail(400, f"unknown field(s): {', '.join(unknown)}")
    return data


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(400, f"{name} must be a whole number")
    if not low <= value <= high:
        _fail(400, f"{name} must be between {low} and {high}")
    return value


@api_blueprint.get("/schedules")
def list_schedules() -> ResponseReturnValue:
    """Every schedule: trigger, zone, next fire times, enabled, paused, last run, failures."""
    views = ScheduleService.for_app().overview(recent=1)
    return jsonify({"schedules": [schedule_json(view) for view in views]})


@api_blueprint.get("/schedules/<name>")
def get_schedule(name: str) -> ResponseReturnValue:
    """One schedule, with its newest audit entries (and a runtime one's fields as submitted)."""
    view = schedule_json(ScheduleService.for_app().get(name, recent=1))
    submitted = RuntimeSchedules.for_app().submitted(name)
    if submitted is not None:
        view["submitted"] = submitted
    entries = audit.recent(cronwork.redis(), cronwork.keys(), name, SCHEDULE_AUDIT)
    return jsonify({**view, "audit": [entry.to_dict() for entry in entries]})


@api_blueprint.post("/schedules")
def add_schedule() -> ResponseReturnValue:
    """Add a runtime schedule: the JSON body is a schedule.toml table plus its `name` → 201."""
    with audited(Source.API, Action.SCHEDULE_ADD) as note:
        fields = _body(None)
        name = fields.get("name")
        note.schedule = name if isinstance(name, str) and name else None
        change = RuntimeSchedules.for_app().add(fields)
        note.detail = change_detail(change)
    headers = {"Location": url_for(".get_schedule", name=change.spec.name)}
    return jsonify(_written(change)), 201, headers


@api_blueprint.put("/schedules/<name>")
def update_schedule(name: str) -> ResponseReturnValue:
    """Replace a runtime schedule with the JSON body (the whole table; `name` optional) → 200."""
    with audited(Source.API, Action.SCHEDULE_UPDATE, schedule=name) as note:
        change = RuntimeSchedules.for_app().update(name, _body(None))
        note.detail = change_detail(change)
    return jsonify(_written(change))


@api_blueprint.delete("/schedules/<name>")
def delete_schedule(name: str) -> ResponseReturnValue:
    """Delete a runtime schedule → 204: it stops firing; its ledger stays."""
    with audited(Source.API, Action.SCHEDULE_DELETE, schedule=name):
        _body(frozenset())
        RuntimeSchedules.for_app().delete(name)
    return "", 204


def _written(change: RuntimeChange) -> dict[str, Any]:
    view = schedule_json(ScheduleService.for_app().get(change.spec.name, recent=0))
    return {**view, "submitted": change.submitted}


@api_blueprint.get("/audit")
def audit_trail() -> ResponseReturnValue:
    """Operator actions, newest first: every one, or one schedule's (`schedule`); `limit`, default 50."""
    limit = _int_arg("limit", 50, 1, audit.MAX_LIMIT)
    schedule = request.args.get("schedule") or None
    entries = audit.recent(cronwork.redis(), cronwork.keys(), schedule, limit)
    return jsonify({"schedule": schedule, "entries": [entry.to_dict() for entry in entries]})


@api_blueprint.get("/schedules/<name>/next")
def next_fires(name: str) -> ResponseReturnValue:
    """The next `count` fire times (UTC)."""
    count = _int_arg("count", 5, 1, MAX_NEXT)
    times = ScheduleService.for_app().next_fires(name, count)
    return jsonify({"schedule": name, "next_fire_times": [t.isoformat() for t in times]})


@api_blueprint.get("/schedules/<name>/history")
def history(name: str) -> ResponseReturnValue:
    """The ledger, newest first (`limit`, default 50)."""
    limit = _int_arg("limit", 50, 1, MAX_HISTORY)
    return jsonify({"schedule": name, "runs": ScheduleService.for_app().history(name, limit)})


@api_blueprint.post("/schedules/<name>/run")
def run(name: str) -> ResponseReturnValue:
    """Enqueue a manual run of a declared, registered schedule."""
    with audited(Source.API, Action.RUN_NOW, schedule=name) as note:
        _body(frozenset())
        manual = ScheduleService.for_app().run_now(name)
        note.target = manual.job_id
    return jsonify(asdict(manual)), 202


@api_blueprint.post("/schedules/<name>/backfill")
def backfill(name: str) -> ResponseReturnValue:
    """Enqueue each tick from `from` to `to` (ISO-8601; without an offset, the schedule's zone)
    once → 202 with the counts; `"dry_run": true` → 200 with the ticks, nothing enqueued."""
    with audited(Source.API, Action.BACKFILL, schedule=name) as note:
        data = _body(frozenset({"from", "to", "dry_run"}))
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            _fail(400, "dry_run must be true or false")
        spec = ScheduleService.for_app().registered_spec(name)
        try:
            result = backfill_schedule(spec, data.get("from"), data.get("to"), dry_run=dry_run)
        except BackfillError as exc:
            _fail(400, str(exc))
        note.detail = describe(data.get("from"), data.get("to"), result)
    return jsonify({"schedule": name, **result.as_dict()}), 200 if dry_run else 202


@api_blueprint.post("/schedules/<name>/pause")
def pause(name: str) -> ResponseReturnValue:
    """Pause with {"reason": "..."}."""
    with audited(Source.API, Action.PAUSE, schedule=name) as note:
        data = _body(frozenset({"reason"}))
        record = ScheduleService.for_app().pause(name, data.get("reason"))
        note.detail = record["reason"]
    return jsonify({"schedule": name, "paused": True, **record})


@api_blueprint.post("/schedules/<name>/resume")
def resume(name: str) -> ResponseReturnValue:
    """Resume; `was_paused` tells whether there was anything to resume."""
    with audited(Source.API, Action.RESUME, schedule=name) as note:
        _body(frozenset())
        was_paused = ScheduleService.for_app().resume(name)
        note.detail = "" if was_paused else "was not paused"
    return jsonify({"schedule": name, "paused": False, "was_paused": was_paused})


@api_blueprint.get("/failed")
def failed() -> ResponseReturnValue:
    """Failed runs of every queue, newest first (`schedule` to filter)."""
    runs = list_failed(cronwork.redis(), request.args.get("schedule") or None)
    return jsonify({"failed": [r.to_dict() for r in runs]})


@api_blueprint.post("/failed/<job_id>/requeue")
def requeue_one(job_id: str) -> ResponseReturnValue:
    """Requeue one failed run."""
    with audited(Source.API, Action.REQUEUE, schedule=schedule_of_job(job_id), target=job_id):
        _body(frozenset())
        try:
            run = requeue(cronwork.redis(), cronwork.keys(), job_id)
        except RequeueError as exc:
            _fail(404, str(exc))
    return jsonify({"requeued": [run.to_dict()], "count": 1})


@api_blueprint.post("/failed/requeue")
def requeue_many() -> ResponseReturnValue:
    """Requeue every failed run, or one schedule's with {"schedule": name}."""
    with audited(Source.API, Action.REQUEUE_ALL) as note:
        schedule = _body(frozenset({"schedule"})).get("schedule")
        if schedule is not None:
            if not isinstance(schedule, str) or not schedule:
                _fail(400, "schedule must be a schedule name")
            ScheduleService.for_app().require(schedule)
            note.schedule = schedule
        try:
            runs = requeue_all(cronwork.redis(), cronwork.keys(), schedule)
        except RequeueError as exc:
            _fail(409, str(exc))
        note.detail = f"{len(runs)} requeued"
    return jsonify({"requeued": [r.to_dict() for r in runs], "count": len(runs)})


@api_blueprint.post("/shipments/<int:rental_id>/retry")
def retry_shipment(rental_id: int) -> ResponseReturnValue:
    """Put a failed rental back to pending: the next shipments run ships it."""
    with audited(Source.API, Action.SHIPMENT_RETRY, target=f"rental:{rental_id}"):
        _body(frozenset())
        try:
            rental = retry_rental(rental_id)
        except RetryRefused as exc:
            _fail(404 if isinstance(exc, UnknownRental) else 409, str(exc))
    return jsonify({"rental_id": rental.id, "status": rental.status.value, "last_error": rental.last_error})
