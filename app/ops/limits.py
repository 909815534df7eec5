"""Guessing is slow and visible (issue 13): Flask-Limiter windows over failed logins.

One client tried ~150 form logins, ~177 HTTP Basic and ~413 bearer tokens a second. Now every
wrong credential (form, Basic, Bearer) is deducted from two of Flask-Limiter's moving windows
in Redis, one per client address and one per account (the user name tried, or the API token),
and logged and counted (cronwork.auth_failures, `/metrics`). A client or account whose window
is full is locked out: every request of it that presents credentials is refused with 429 and
Retry-After, the right credentials included, until the window frees. AUTH_FAILURE_LIMIT holds
the windows (Flask-Limiter's notation, `;` between several, longest first): by default 5 a
minute and 10 in 15 minutes, so a lockout grows from about a minute to up to 15 minutes.

Only requests that present credentials are checked (a logged-in session goes on while a
guesser locks its user name out), and never /healthz or /metrics. The windows live under the
app's Redis and prefix (Keys.rate_limits), on the app's own connection pool (Sentinel included).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit

from app.extensions import cronwork
from cronwork.auth_failures import Scheme, Scope, digest, record_failure, record_lockout

log = logging.getLogger(__name__)

EXTENSION = "cronwork_limiter"
# Longest window first: Flask-Limiter reports the first full one, so Retry-After is the whole wait.
DEFAULT_FAILURE_LIMIT = "10 per 15 minutes; 5 per minute"
_FAILED = "cronwork.auth_failed"  # request.environ flag: this request presented wrong credentials
MESSAGES = {
    Scope.CLIENT: "Too many failed logins from this address: try again later.",
    Scope.ACCOUNT: "Too many failed logins for this account: try again later.",
}


def init_limits(app: Flask, checked: Callable[[], bool], account: Callable[[], str]) -> Limiter:
    """Bind a Limiter to `app`: `checked()` says whether a request presents credentials,
    `account()` which account they name. Opens no connection."""
    app.config.setdefault("AUTH_FAILURE_LIMIT", DEFAULT_FAILURE_LIMIT)
    state = cronwork.state(app)
    storage: dict[str, Any] = {
        "connection_pool": state.connection.connection_pool,
        "key_prefix": state.keys.rate_limits,
    }
    subjects = {Scope.CLIENT: client, Scope.ACCOUNT: lambda: f"account:{digest(account())}"}
    limiter = Limiter(
        key_func=client,
        application_limits=[
            ApplicationLimit(
                _failure_limit,
                key_function=subject,
                scope=f"auth-{scope.value}",
                exempt_when=lambda: not checked(),
                deduct_when=_failed,
                on_breach=partial(_locked_out, scope, subject),
                error_message=MESSAGES[scope],
            )
            for scope, subject in subjects.items()
        ],
        strategy="moving-window",
        storage_uri="redis://",  # the scheme picks the storage class; the pool is the app's
        storage_options=storage,
        headers_enabled=False,  # Retry-After on a lockout only (_locked_out), no counts for guessers
    )
    limiter.init_app(app)
    app.extensions[EXTENSION] = limiter
    return limiter


def client() -> str:
    """The client's address (behind a proxy: whatever the WSGI server was told it is)."""
    return f"client:{request.remote_addr or 'unknown'}"


def _failure_limit() -> str:
    return str(current_app.config["AUTH_FAILURE_LIMIT"])


def _failed(response: Response) -> bool:
    return bool(request.environ.get(_FAILED))


def shown(user: str | None) -> str:
    """A user name as a guesser sent it, quoted and escaped so that a log line stays one line."""
    return "-" if user is None else json.dumps(user[:64])


def note_failure(scheme: Scheme, user: str | None) -> None:
    """One wrong credential: a WARNING line (never the password or token), the counter in Redis,
    and, when the response goes out, a deduction from the client's and the account's windows."""
    request.environ[_FAILED] = True
    log.warning(
        "ops auth failure scheme=%s user=%s remote=%s path=%s",
        scheme.value,
        shown(user),
        request.remote_addr,
        request.path,
    )
    record_failure(cronwork.redis(), cronwork.keys(), scheme)


def _locked_out(scope: Scope, subject: Callable[[], str], limit: RequestLimit) -> Response:
    """A refused request of a locked-out client or account: 429 with Retry-After; the first one
    of a lockout is logged and counted."""
    retry_after = max(1, math.ceil(limit.window[0] - time.time()))  # when the oldest failure leaves
    if record_lockout(cronwork.redis(), cronwork.keys(), scope, subject(), retry_after):
        log.warning(
            "ops auth lockout scope=%s remote=%s limit=%s retry_after=%d",
            scope.value,
            request.remote_addr,
            limit.limit,
            retry_after,
        )
    return Response(status=429, headers={"Retry-After": str(retry_after)})
