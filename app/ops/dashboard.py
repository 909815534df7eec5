"""rq-dashboard 0.9 mounted at /rq, behind the ops login, with its actions guarded.

rq-dashboard has no auth of its own (app.ops.auth.guard covers it like every ops page), and
its "requeue all" is a GET (`/requeue/<queue>`), so a link or an <img> on any site could
trigger it: GET is refused there. Its POST actions (requeue, delete, empty, compact) need the
session's CSRF token, which its own JS sends as X-CSRFToken when a `_csrf_token` cookie exists
(dashboard.js) — we set that cookie on its pages. It is never served in debug mode.

It never unpickles: rq-dashboard's `config.serializer` (what its own CLI sets for
RQ_DASHBOARD_JSON_SERIALIZER) is Cronwork's JSON one, and the views of rq_dashboard/web.py that
ignore it (`Job.fetch` with no serializer in job_view and delete_job_view, `requeue_job` in both
requeues, `Worker.all(...).get_current_job()` in list_workers, empty_queue through
delete_job_view) are replaced by the versions below, which read jobs through cronwork.jobdata.
A job that does not decode is shown as "undecodable job data", can be deleted, is never requeued.

No script from data (issue 13). rq-dashboard 0.9 renders job, queue and worker fields with
underscore's unescaped `<%= %>` into innerHTML (an exception text with `<img onerror>` ran in the
ops origin), and its scripts/jobs.js puts the queue name of the URL into an inline script with
HTML escaping only (.js templates are not autoescaped: `/rq/0/view/jobs/x');…;('/…` ran script).
app/templates/rq_dashboard/ shadows the blueprint's templates of the same names (the app's
template folder comes first in Flask's loader); each is rq-dashboard 0.9.0's file with only these
changes, pinned by OVERRIDDEN_TEMPLATES (the originals' sha256: an upgrade fails a test):
  job.html, jobs.html, queues.html, workers.html: every `<%= %>` is `<%- %>` (_.escape), for
    description, exc_info, result, metadata, origin, status, ids, dates, queue and worker names,
    versions, the current job and its call string; jobs.html drops its own jQuery escaping;
  scripts/jobs.js: the queue name as `|tojson`, and row ids read as text (`.attr`, not `.data`,
    which turned "1e3" into 1000);
  base.html: the one inline script carries the response's CSP nonce;
  navbar.html: the Redis URL through mask_url (rq-dashboard masks only the userinfo, so a
    `?password=` in REDIS_URL was shown to every operator).
Its pages also get DASHBOARD_CSP (app.ops._headers): scripts only from 'self' and that nonce, so
markup that slipped through still could not run. 'unsafe-eval' stays because underscore's
`_.template` compiles the static `<script type="text/template">` sources with `new Function`
(none holds data); inline handlers, injected scripts and javascript: URLs stay blocked.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import rq_dashboard
import rq_dashboard.web as rq_web
from flask import Flask, Response, current_app, jsonify, make_response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from redis import Redis
from rq import Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.results import Result
from rq.worker import BaseWorker

from app.extensions import REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT, parse_sentinels, redis_from_config
from app.ops.audit_log import record_dashboard_action
from app.ops.auth import basic_ok, csrf_token, error, session_ok
from cronwork.jobdata import (
    DECODE_ERRORS,
    UNDECODABLE,
    UndecodableJob,
    fetch_checked,
    fetch_many_checked,
)
from cronwork.keys import job_key
from cronwork.serializer import JOB_SERIALIZER, JSONJob, json_queue
from cronwork.settings import mask_url

log = logging.getLogger(__name__)

URL_PREFIX = "/rq"
CSRF_COOKIE = "_csrf_token"  # the name rq-dashboard's dashboard.js reads
BLUEPRINT = rq_dashboard.blueprint.name
GET_ACTIONS = frozenset({f"{BLUEPRINT}.requeue_all"})  # state-changing routes that accept GET
# Its HTML pages (the rest answer JSON to its own JS).
PAGE_VIEWS = frozenset(
    f"{BLUEPRINT}.{view}" for view in ("queues_overview", "workers_overview", "jobs_overview")
)
# rq-dashboard 0.9.0's templates shadowed by app/templates/rq_dashboard/ → sha256 of the original
# each was copied from (tests/app/test_ops_dashboard.py compares them with the installed files).
OVERRIDDEN_TEMPLATES = {
    "rq_dashboard/base.html": "1bf4f33567e813cc42bec259f19f1f0360bfcdfddf3ea50ea94af7fdbc7f75ea",
    "rq_dashboard/job.html": "d9de753e9d82795c0b0f79d9ad5eac84326e41d0e1bc4ef811ca6c93b72c926e",
    "rq_dashboard/jobs.html": "4e7c41bc0a15b0ea7018498d78ca2afc80d504e71e73e8f738d9ae03f4460262",
    "rq_dashboard/navbar.html": "a4723e800d40c8c897163345c523b3d91a3eb1b8bbf2903bbb91881b09094507",
    "rq_dashboard/queues.html": "df57de14c3a172b327f75ca320356197f99702a66cf19a5986d8671b0348c880",
    "rq_dashboard/workers.html": "122e24c87e2b003c38e71ac36f7f40a30fa5beed24bd0508bfb09458dd392853",
    "rq_dashboard/scripts/jobs.js": "59df5f48c943ddd19cc7c6f416c81e6b26e1bb194970fcaba43e702b11b1f526",
}
# {nonce} is the response's, or absent when no inline script was rendered (its JSON views).
# Bootstrap's CSS draws its icons from data: URIs; its templates keep a few style="" attributes
# (the job page's hidden Requeue button), which cannot run anything.
CSP_NONCE_KEY = "cronwork.csp_nonce"
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'{nonce} 'unsafe-eval'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def dashboard_redis_url(config: Mapping[str, Any]) -> str:
    """The app's Redis as a URL rq-dashboard understands (it builds its clients from it), with timeouts.

    With REDIS_SENTINELS set: redis+sentinel://[:password@]host:port,…/master/db, the form its
    redis-sentinel-url dependency parses; password and db still come from REDIS_URL.
    """
    parts = urlsplit(config["REDIS_URL"])
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(REDIS_SOCKET_TIMEOUT))
    query.setdefault("socket_connect_timeout", str(REDIS_CONNECT_TIMEOUT))
    if not config.get("REDIS_SENTINELS"):
        return urlunsplit(parts._replace(query=urlencode(query)))
    auth = f":{parts.password}@" if parts.password else ""
    nodes = ",".join(f"{host}:{port}" for host, port in parse_sentinels(config["REDIS_SENTINELS"]))
    master = config.get("REDIS_SENTINEL_MASTER") or "mymaster"
    path = f"/{master}/{parts.path.lstrip('/') or 0}"
    return urlunsplit(("redis+sentinel", auth + nodes, path, urlencode(query), ""))


def mount_dashboard(app: Flask) -> None:
    """Register rq-dashboard's blueprint at /rq on the app's Redis; opens no connection."""
    # A tuple: rq-dashboard indexes it by the instance number in its URLs.
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", (dashboard_redis_url(app.config),))
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 5000)
    # What rq_dashboard.web.setup_rq_connection would set (used by its routes without an
    # instance number); lazy, like every client here. Flask declares no such attribute: ignore.
    app.redis_conn = redis_from_config(app.config)  # type: ignore[attr-defined]
    # Process-wide, like rq-dashboard's own CLI does it (rq_dashboard/app.py).
    rq_web.config.serializer = JOB_SERIALIZER
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    replace_unsafe_views(app)
    app.add_template_global(csp_nonce)  # for the inline script of our rq_dashboard/base.html
    app.add_template_filter(mask_url, "mask_url")  # for our rq_dashboard/navbar.html
    app.before_request(dashboard_guard)
    app.after_request(csrf_cookie)
    app.after_request(record_dashboard_action)  # its actions into the audit trail (issue 12)


def dashboard_guard() -> ResponseReturnValue | None:
    """Runs after auth.guard: no debug mode, one Redis instance, no state change by GET."""
    if request.blueprint != BLUEPRINT:
        return None
    if current_app.debug:
        return error(503, "rq-dashboard is not served while the app runs in debug mode")
    if (request.view_args or {}).get("instance_number", 0) != 0:
        return error(404, "rq-dashboard shows only this app's Redis (instance 0)")
    if request.endpoint in GET_ACTIONS and request.method != "POST":
        return error(405, "this action changes state: POST it with the CSRF token", {"Allow": "POST"})
    if not listing_ok(request.view_args or {}):
        return error(404, "no such registry or page")
    if request.endpoint in PAGE_VIEWS:
        # Its queues page catches Redis errors itself and answers 200 "Connection Error": a
        # ping first lets app.ops.errors answer 503 naming Redis (its JSON views raise anyway).
        _conn().ping()
    return None


def listing_ok(args: Mapping[str, Any]) -> bool:
    """A known registry and pages counted from 1: rq-dashboard answers 500 otherwise (issue 13)."""
    if "registry_name" in args and args["registry_name"] not in ("queued", *REGISTRIES):
        return False
    numbers = [str(args[name]) for name in ("per_page", "page") if name in args]
    return all(number.isdigit() and int(number) > 0 for number in numbers)


def csp_nonce() -> str:
    """This response's script nonce, made on first use (a template that renders it needs it)."""
    # Kept in the request's environ, not in `g`: `g` lives as long as the app context, which
    # outlives one request wherever a context is already pushed (tests, flask shell).
    return str(request.environ.setdefault(CSP_NONCE_KEY, secrets.token_urlsafe(16)))


def dashboard_csp() -> str:
    """The Content-Security-Policy of an /rq response: its scripts and this response's nonce only."""
    nonce = request.environ.get(CSP_NONCE_KEY)
    return DASHBOARD_CSP.format(nonce=f" 'nonce-{nonce}'" if nonce else "")


def is_dashboard_path(path: str) -> bool:
    """Whether `path` is under /rq (matched or not: its 404s get the same policy)."""
    return path == URL_PREFIX or path.startswith(f"{URL_PREFIX}/")


def csrf_cookie(response: Response) -> Response:
    """Hand the session's CSRF token to rq-dashboard's JS on its own pages."""
    if request.blueprint == BLUEPRINT and response.status_code < 400 and (session_ok() or basic_ok()):
        response.set_cookie(
            CSRF_COOKIE,
            csrf_token(),
            path=URL_PREFIX,
            samesite="Strict",
            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
            httponly=False,  # read by dashboard.js, compared with the session's copy server-side
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


# -- rq-dashboard's views that would unpickle, or fail on a job that does not decode --------------

REGISTRIES = ("failed", "deferred", "started", "finished", "scheduled", "canceled")


def _conn() -> Redis:
    return current_app.redis_conn  # type: ignore[attr-defined]


def delete_any(connection: Redis, job_id: str) -> bool:
    """Delete a job, decodable or not; False when there is no such job."""
    try:
        fetch_checked(connection, job_id).delete()
        return True
    except NoSuchJobError:
        return False
    except UndecodableJob:
        pass
    # rq's Job.delete needs a decoded job: remove what it would, from the raw origin.
    raw = connection.hget(job_key(job_id), "origin")
    origin = raw.decode(errors="replace") if isinstance(raw, bytes) else ""
    queue = json_queue(origin, connection)
    with connection.pipeline() as pipe:
        pipe.lrem(queue.key, 0, job_id)
        for name in REGISTRIES:
            pipe.zrem(getattr(queue, f"{name}_job_registry").key, job_id)
        pipe.delete(job_key(job_id), Result.get_key(job_id))
        pipe.execute()
    log.warning("deleted undecodable job_id=%s origin=%s from rq-dashboard", job_id, origin)
    return True


def job_view(instance_number: int, job_id: str) -> ResponseReturnValue:
    """The job page (its data comes from job_info); only checks the job exists, decodes nothing."""
    if not _conn().exists(job_key(job_id)):
        return error(404, f"no job {job_id!r}")
    response = make_response(
        render_template(
            "rq_dashboard/job.html",
            current_instance=instance_number,
            instance_list=rq_web.escape_format_instance_list(current_app.config.get("RQ_DASHBOARD_REDIS_URL")),
            id=job_id,
            rq_url_prefix=url_for(".queues_overview"),
            rq_dashboard_version=rq_web.rq_dashboard_version,
            rq_version=rq_web.rq_version,
            deprecation_options_usage=current_app.config.get("DEPRECATED_OPTIONS", False),
            enable_delete=not current_app.config.get("RQ_DASHBOARD_DISABLE_DELETE"),
        )
    )
    response.headers.set("Cache-Control", "no-store")
    return response


@rq_web.check_delete_enable
@rq_web.jsonify
def delete_job_view(job_id: str) -> dict[str, Any]:
    return {"status": "OK" if delete_any(_conn(), job_id) else "ERROR"}


@rq_web.jsonify
def requeue_job_view(job_id: str) -> dict[str, Any]:
    try:
        fetch_checked(_conn(), job_id).requeue()
    except (NoSuchJobError, InvalidJobOperation, UndecodableJob) as exc:
        return {"status": "ERROR", "error": str(exc)}
    return {"status": "OK"}


@rq_web.jsonify
def requeue_all(queue_name: str) -> dict[str, Any]:
    """Requeue every decodable failed job of a queue; undecodable ones stay, listed by id."""
    connection = _conn()
    job_ids = json_queue(queue_name, connection).failed_job_registry.get_job_ids(cleanup=False)
    count, undecodable = 0, []
    for job_id, job in zip(job_ids, fetch_many_checked(connection, job_ids), strict=True):
        if isinstance(job, UndecodableJob):
            undecodable.append(job_id)
        elif job is not None:
            try:
                job.requeue()
                count += 1
            except InvalidJobOperation:  # requeued or deleted meanwhile
                pass
    return {"status": "OK", "count": count, "undecodable": undecodable}


@rq_web.check_delete_enable
@rq_web.jsonify
def empty_queue(queue_name: str, registry_name: str) -> dict[str, Any]:
    connection = _conn()
    queue = json_queue(queue_name, connection)
    if registry_name == "queued":
        queue.empty()  # a Lua script: deletes by id, decodes nothing
    elif registry_name in REGISTRIES:
        registry = getattr(queue, f"{registry_name}_job_registry")
        for job_id in registry.get_job_ids(cleanup=False):
            if not delete_any(connection, job_id):
                registry.remove(job_id)
    return {"status": "OK"}


def _current_job(connection: Redis, worker: BaseWorker) -> str | dict[str, Any]:
    job_id = worker.get_current_job_id()
    if job_id is None:
        return "idle"
    try:
        return rq_web.serialize_current_job(fetch_checked(connection, job_id))
    except NoSuchJobError:
        return {"job_id": job_id, "description": "(gone)", "created_at": None, "call_string": ""}
    except UndecodableJob as exc:
        return {"job_id": job_id, "description": str(exc), "created_at": None, "call_string": UNDECODABLE}


@rq_web.jsonify
def list_workers(instance_number: int) -> dict[str, Any]:
    connection = _conn()
    rows = [
        {
            "name": worker.name,
            "pid": worker.pid,
            "queues": [q.name for q in worker.queues],
            "state": str(worker.get_state()),
            "current_job": _current_job(connection, worker),
            "last_heartbeat": worker.last_heartbeat,
            "birth_date": worker.birth_date,
            "successful_job_count": worker.successful_job_count,
            "failed_job_count": worker.failed_job_count,
            "total_working_time": worker.total_working_time,
            "version": getattr(worker, "version", ""),
            "python_version": getattr(worker, "python_version", ""),
        }
        for worker in Worker.all(connection=connection, job_class=JSONJob, serializer=JOB_SERIALIZER)
    ]
    return {"workers": sorted(rows, key=lambda w: (w["state"], w["queues"], w["name"]))}


def undecodable_as_json(view: Callable[..., Any]) -> Callable[..., ResponseReturnValue]:
    """rq-dashboard's own view (JSON already), with a job that does not decode answered as such."""

    @wraps(view)
    def wrapped(**kwargs: Any) -> ResponseReturnValue:
        headers = {"Cache-Control": "no-store"}
        job_id = kwargs.get("job_id")
        try:
            if job_id is not None:
                fetch_checked(_conn(), job_id)  # the same verdict as every other reader
            return view(**kwargs)
        except NoSuchJobError:
            return jsonify({"error": f"no job {job_id!r}"}), 404, headers
        except UndecodableJob as exc:
            body = {"id": job_id, "status": "undecodable", "description": str(exc), "exc_info": str(exc)}
            return jsonify(body), 200, headers
        except DECODE_ERRORS as exc:  # a job of the list, or a result stream, rq cannot read
            log.warning("rq-dashboard path=%s: %s", request.path, UNDECODABLE, exc_info=True)
            return jsonify({"error": f"{UNDECODABLE} ({type(exc).__name__})"}), 422, headers

    return wrapped


# endpoint → replacement (a view function) or None: rq-dashboard's own, wrapped.
REPLACED_VIEWS: dict[str, Callable[..., Any] | None] = {
    "job_view": job_view,
    "delete_job_view": delete_job_view,
    "requeue_job_view": requeue_job_view,
    "requeue_all": requeue_all,
    "empty_queue": empty_queue,
    "list_workers": list_workers,
    "job_info": None,
    "list_jobs": None,
}


def replace_unsafe_views(app: Flask) -> None:
    """Swap rq-dashboard's views that fetch jobs its own way; fail loudly if one was renamed."""
    for endpoint, replacement in REPLACED_VIEWS.items():
        name = f"{BLUEPRINT}.{endpoint}"
        if name not in app.view_functions:
            raise RuntimeError(f"rq-dashboard has no view {name!r} any more: review app/ops/dashboard.py")
        app.view_functions[name] = replacement or undecodable_as_json(app.view_functions[name])
