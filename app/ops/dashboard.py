"""rq-dashboard 0.9 mounted at /rq, behind the ops login, with its actions guarded.

rq-dashboard has no auth of its own (app.ops.auth.guard covers it like every ops page), and
its "requeue all" is a GET (`/requeue/<queue>`), so a link or an <img> on any site could
trigger it: GET is refused there. Its POST actions (requeue, delete, empty, compact) need the
session's CSRF token, which its own JS sends as X-CSRFToken when a `_csrf_token` cookie exists
(dashboard.js) — we set that cookie on its pages. It is never served in debug mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import rq_dashboard
from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue

from app.extensions import REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT, parse_sentinels, redis_from_config
from app.ops.auth import basic_ok, csrf_token, error, session_ok

URL_PREFIX = "/rq"
CSRF_COOKIE = "_csrf_token"  # the name rq-dashboard's dashboard.js reads
BLUEPRINT = rq_dashboard.blueprint.name
GET_ACTIONS = frozenset({f"{BLUEPRINT}.requeue_all"})  # state-changing routes that accept GET


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
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    app.before_request(dashboard_guard)
    app.after_request(csrf_cookie)


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
    return None


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
