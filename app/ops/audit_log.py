"""Operator actions of the web and the CLI into the audit trail (cronwork.audit), with who and where.

The handlers call `record` (or wrap their action in `audited`, which records a refusal too);
this module fills in the actor, the source's remote address and the app's Redis. rq-dashboard's
actions are its own views: `record_dashboard_action` (an after_request hook) names them.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Response, has_request_context, request, session
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from app.extensions import cronwork
from app.ops.auth import SESSION_USER
from app.services.failed import RequeueError
from app.services.runtime_schedules import RuntimeChange
from app.services.schedules import ScheduleActionError
from app.services.shipments import RetryRefused
from cronwork import audit
from cronwork.audit import Action, AuditEntry, Outcome, Source

log = logging.getLogger(__name__)

# Exceptions that mean "refused" (the operator's input), as opposed to an error of ours.
REFUSALS: tuple[type[Exception], ...] = (ScheduleActionError, RequeueError, RetryRefused, HTTPException)
# rq-dashboard's state-changing endpoints → the action, and the URL arguments naming the target.
DASHBOARD_ACTIONS: dict[str, tuple[Action, tuple[str, ...]]] = {
    "rq_dashboard.requeue_job_view": (Action.REQUEUE, ("job_id",)),
    "rq_dashboard.delete_job_view": (Action.DELETE, ("job_id",)),
    "rq_dashboard.requeue_all": (Action.REQUEUE_ALL, ("queue_name",)),
    "rq_dashboard.empty_queue": (Action.EMPTY, ("queue_name", "registry_name")),
    "rq_dashboard.compact_queue": (Action.COMPACT, ("queue_name",)),
}


def web_actor(source: Source) -> str:
    """Who sent the request: "token" for the API (its only credential is the Bearer token, a
    session cookie sent along is ignored there), else the session's user or the HTTP Basic user."""
    if source is Source.API:
        return "token"
    user = session.get(SESSION_USER)
    if isinstance(user, str):
        return user
    auth = request.authorization
    return (auth.username or "") if auth is not None and auth.type == "basic" else "anonymous"


def os_user() -> str:
    """The CLI's operator: the OS user (a container may have no passwd entry for its uid)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid:{os.getuid()}"


def record(
    source: Source,
    action: Action,
    *,
    schedule: str | None = None,
    target: str | None = None,
    detail: str = "",
    outcome: Outcome = Outcome.OK,
    actor: str | None = None,
) -> None:
    """Store one entry of the current request (or CLI command); a Redis that refuses it is
    logged, never turned into the action's failure (the action itself is done by then)."""
    in_request = source is not Source.CLI and has_request_context()
    if actor is None:
        actor = web_actor(source) if in_request else os_user()
    entry = AuditEntry(
        actor=actor,
        source=source,
        action=action,
        schedule=schedule,
        target=target,
        detail=detail,
        remote=request.remote_addr if in_request else None,
        outcome=outcome,
    )
    try:
        audit.record(cronwork.redis(), cronwork.keys(), entry)
    except RedisError as exc:
        log.error("audit entry not stored (%s): %s", exc, entry.describe())


@dataclass
class Note:
    """What a handler adds to its entry while it acts."""

    detail: str = ""
    target: str | None = None
    schedule: str | None = None


@contextmanager
def audited(
    source: Source, action: Action, schedule: str | None = None, target: str | None = None
) -> Iterator[Note]:
    """Record the action in the block: ok when it ends, refused or error when it raises (re-raised)."""
    note = Note(target=target, schedule=schedule)
    try:
        yield note
    except Exception as exc:  # recorded, then re-raised unchanged: nothing is hidden
        # `status`: app.ops.api.ApiError (bad input), which cannot be imported here (api imports us).
        outcome = Outcome.REFUSED if isinstance(exc, REFUSALS) or hasattr(exc, "status") else Outcome.ERROR
        detail = getattr(exc, "description", None) or str(exc) or type(exc).__name__
        record(
            source, action, schedule=note.schedule, target=note.target, detail=str(detail), outcome=outcome
        )
        raise
    record(source, action, schedule=note.schedule, target=note.target, detail=note.detail)


def change_detail(change: RuntimeChange) -> str:
    """What a runtime schedule was written as, for its entry: function and trigger."""
    return f"{change.spec.func} {change.spec.trigger.describe()}"


def schedule_of_job(job_id: str) -> str | None:
    """The schedule of a run's job id (`<prefix>-<name>-<tick>`), None for another job."""
    rest = cronwork.keys().name_from_template_id(job_id)
    name, _, tick = (rest or "").rpartition("-")
    return name if name and tick.isdigit() else None


def record_dashboard_action(response: Response) -> Response:
    """after_request: an rq-dashboard POST that reached its view is recorded with its target."""
    known = DASHBOARD_ACTIONS.get(request.endpoint or "")
    # A refusal by the guards (401, 403 CSRF, 405 GET) never reached the view: not an action.
    if known is None or request.method != "POST" or response.status_code in (401, 403, 405):
        return response
    action, arguments = known
    args = request.view_args or {}
    target = "/".join(str(args.get(name, "")) for name in arguments)
    parsed: Any = response.get_json(silent=True) if response.is_json else None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    status = body.get("status")
    ok = response.status_code < 400 and status in (None, "OK")
    detail = "" if ok else str(body.get("error") or status or response.status_code)
    if ok and "count" in body:
        detail = f"{body['count']} requeued"
    record(
        Source.DASHBOARD,
        action,
        schedule=schedule_of_job(target) if "job_id" in arguments else None,
        target=target,
        detail=detail,
        outcome=Outcome.OK if ok else Outcome.REFUSED,
    )
    return response
