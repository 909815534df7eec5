"""Error pages: HTTP errors as pages inside the ops layout (JSON under /api and for JSON clients),
and Redis or the database down as a 503 that names the part, on pages, the API and /rq.

Without this, a Redis outage was a bare 500 on the pages and the API, and rq-dashboard's
queues page said only "Connection Error" with a 200.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from app.extensions import cronwork
from app.ops import PAGE_CSP
from app.ops.auth import basic_ok, missing_secrets, session_ok
from cronwork.connection import describe_redis, mask_url

log = logging.getLogger(__name__)

TITLES = {404: "Not found", 500: "Something went wrong", 503: "Unavailable"}


def register_error_pages(app: Flask) -> None:
    """Register the handlers on the whole app (rq-dashboard's routes included)."""
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RedisConnectionError, redis_down)
    app.register_error_handler(RedisTimeoutError, redis_down)
    app.register_error_handler(OperationalError, database_down)


def wants_json() -> bool:
    """The API, and clients that ask for JSON before HTML (rq-dashboard's polling JS)."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def http_error(exc: HTTPException) -> ResponseReturnValue:
    """An HTTP error as JSON or as a page; redirects (routing's 308) pass through."""
    if exc.code is None or exc.code < 400:
        return exc
    message = exc.description or exc.name
    if exc.code >= 500:  # never show an internal error's text
        message = "The server could not answer this request; the error is logged."
    return error_response(exc.code, message, exc)


def redis_down(exc: RedisConnectionError | RedisTimeoutError) -> ResponseReturnValue:
    """Redis unreachable or too slow: 503 naming it (password masked)."""
    where = describe_redis(cronwork.settings())
    log.warning("redis unavailable path=%s where=%s error=%s", request.path, where, exc)
    return error_response(503, f"Redis at {where} is not answering.")


def database_down(exc: OperationalError) -> ResponseReturnValue:
    """The database unreachable (or refusing the statement): 503 naming it (password masked)."""
    where = mask_url(str(current_app.config["SQLALCHEMY_DATABASE_URI"]))
    kind = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    log.warning("database unavailable path=%s where=%s error=%s", request.path, where, kind)
    return error_response(503, f"The database at {where} is not answering ({kind}).")


def error_response(status: int, message: str, exc: HTTPException | None = None) -> Response:
    """`message` with `status`: JSON {"error": …} or the ops layout's error page."""
    if wants_json():
        if exc is not None:  # keep the exception's own headers (Allow, WWW-Authenticate …)
            response = exc.get_response()
            response.data = json.dumps({"error": message}).encode()
            response.mimetype = "application/json"
        else:
            response = jsonify({"error": message})
        response.status_code = status
        return response
    from app.ops.pages import helpers  # the pages' template helpers (pages imports this package)

    title = TITLES.get(status) or (exc.name if exc is not None else "Error")
    html = render_template(
        "ops/error.html", status=status, title=title, message=message, signed_in=_signed_in(), **helpers()
    )
    response = exc.get_response() if exc is not None else Response()
    response.set_data(html)
    response.mimetype = "text/html"
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = PAGE_CSP
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def _signed_in() -> bool:
    """Whether to show the ops navigation (an anonymous 404 gets only the way back)."""
    return not missing_secrets() and (session_ok() or basic_ok())
