"""Who may use the ops surface: a Bearer token for the API; a login or HTTP Basic for pages and /rq.

Every ops route is protected unless listed in PUBLIC_ENDPOINTS; `guard` runs before every
request and decides, through maintained extensions (issue 13): Flask-HTTPAuth checks the
API's Bearer token and HTTP Basic, Flask-Login keeps the form login (whose session lives in
Redis, app.ops.sessions, so logout and a password change end it), Flask-WTF's CSRFProtect
checks the CSRF token of every state-changing request made with ambient credentials (the
session cookie, Basic); a Bearer token is never ambient, so API calls need none. Wrong
credentials of any kind are logged, counted and rate limited (app.ops.limits). What stays
Cronwork's own: the 503 without strong secrets, the same-origin check (CSRFProtect checks the
Referer only over HTTPS) and the redirect target's check (safe_next).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import unicodedata
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, current_app, g, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_httpauth import HTTPBasicAuth, HTTPTokenAuth  # type: ignore[import-untyped]
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user  # type: ignore[import-untyped]
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf  # type: ignore[import-untyped]
from redis.exceptions import RedisError

from app.extensions import cronwork
from app.ops.limits import init_limits, note_failure
from app.ops.sessions import SessionStore
from cronwork.auth_failures import Scheme

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = frozenset({"ops.healthz", "ops.metrics", "static"})
LOGIN_ENDPOINTS = frozenset({"ops.pages.login"})
PROTECTED_BLUEPRINTS = ("ops", "rq_dashboard")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = "Cronwork ops"
# The user's name in the cookie, for display and the audit trail (app.ops.audit_log); whether
# the session is alive is decided by its record in Redis, never by this.
SESSION_USER = "ops_user"
TOKEN_ACCOUNT = "(api token)"  # the account a Bearer guess counts against

csrf = CSRFProtect()
login_manager = LoginManager()
# "strong": a cookie that shows up with another address or browser loses the login.
login_manager.session_protection = "strong"
basic_auth = HTTPBasicAuth(realm=REALM)
token_auth = HTTPTokenAuth(scheme="Bearer", realm="api")


def _equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two texts."""
    return hmac.compare_digest(given.encode(), expected.encode())


def missing_secrets() -> list[str]:
    """The required settings that are empty or weak (app.ops.secret_policy): a bare name for an
    empty one, `a strong NAME (this one is …)` for a weak one, so the 503's "… not configured"
    reads right; the value itself is never shown."""
    # Imported here to keep this change inside the function while the rest of auth.py is reworked.
    from app.ops.secret_policy import refusals

    return [
        refusal.setting if refusal.missing else f"a strong {refusal.setting} (this one {refusal.reason})"
        for refusal in refusals(current_app.config)
    ]


def init_auth(app: Flask) -> None:
    """Bind the auth extensions to `app` and register `guard`; opens no connection."""
    # CSRFProtect does not check by itself: the guard calls it once the caller is known, so an
    # unauthenticated POST is a 401, not a 403 (and the API, Bearer only, is never checked).
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # The token lives as long as the session, which Redis bounds (idle and absolute limits).
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.before_request(_forget_earlier_request)
    csrf.init_app(app)
    login_manager.init_app(app)
    init_limits(app, presents_credentials, claimed_account)  # before the guard: a lockout refuses first
    app.before_request(guard)


def _forget_earlier_request() -> None:
    """Flask-Login caches the user and Flask-WTF the CSRF token in `g`, which lives as long as the
    app context: where one is pushed already (tests, flask shell) it spans requests, and a user
    loaded before a logout or a password change would still be logged in. Each request decides
    afresh (a no-op under a server, where every request has its own context)."""
    g.pop("_login_user", None)  # Flask-Login 0.6's cache (flask_login.utils._get_user)
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


# -- who: the session, HTTP Basic, the Bearer token ------------------------------------------------


class Operator(UserMixin):
    """A logged-in operator; the id Flask-Login keeps in the cookie is the session's id in Redis."""

    def __init__(self, session_id: str, name: str) -> None:
        self.id = session_id
        self.name = name


def sessions() -> SessionStore:
    """The app's ops sessions in Redis."""
    config = current_app.config
    return SessionStore(
        cronwork.redis(),
        cronwork.keys(),
        idle=float(config["SESSION_IDLE_TIMEOUT"]),
        lifetime=float(config["SESSION_LIFETIME"]),
    )


def _proof() -> str:
    """Ties a session to the current credentials: changing the user or password ends every session."""
    material = f"{current_app.config['ADMIN_USER']}\0{current_app.config['ADMIN_PASSWORD']}"
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


_REDIS_DOWN = "cronwork.sessions_unreadable"  # request.environ flag


@login_manager.user_loader
def _load_operator(session_id: str) -> Operator | None:
    try:
        name = sessions().load(session_id, _proof())
    except RedisError:
        # The first time, the error goes up: app.ops.errors answers 503 naming Redis. Its page
        # asks for the user again (Flask-Login's template context): anonymous then, not a 500.
        if request.environ.get(_REDIS_DOWN):
            return None
        request.environ[_REDIS_DOWN] = True
        raise
    return None if name is None else Operator(session_id, name)


def credentials_ok(user: str, password: str) -> bool:
    """Whether a user and password are the admin's (both always compared)."""
    user_ok = _equal(user, current_app.config["ADMIN_USER"])
    password_ok = _equal(password, current_app.config["ADMIN_PASSWORD"])
    return user_ok and password_ok


def basic_ok() -> bool:
    """Whether the request carries HTTP Basic ADMIN_USER/ADMIN_PASSWORD (checks only: no failure noted)."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    return credentials_ok(auth.username or "", auth.password or "")


def bearer_ok() -> bool:
    """Whether the request carries `Authorization: Bearer <ADMIN_TOKEN>` (checks only)."""
    auth = request.authorization
    token = auth.token if auth is not None and auth.type == "bearer" else None
    return token is not None and _equal(token, current_app.config["ADMIN_TOKEN"])


def session_ok() -> bool:
    """Whether the request belongs to a live login with the current credentials."""
    return bool(current_user.is_authenticated)


@basic_auth.verify_password
def _verify_basic(username: str, password: str) -> str | None:
    if not username and not password:
        return None  # no Basic credentials at all: nothing was guessed
    if credentials_ok(username, password):
        return username
    note_failure(Scheme.BASIC, username)
    _record_basic_refusal(username)
    return None


@token_auth.verify_token
def _verify_token(token: str) -> str | None:
    if not token:
        return None
    if _equal(token, current_app.config["ADMIN_TOKEN"]):
        return TOKEN_ACCOUNT
    note_failure(Scheme.BEARER, None)
    return None


@basic_auth.error_handler
def _basic_refused(status: int) -> Response:
    return error(status, "wrong credentials")  # Flask-HTTPAuth adds WWW-Authenticate: Basic


@token_auth.error_handler
def _token_refused(status: int) -> Response:
    return error(status, "missing or wrong bearer token")


def _passed() -> None:
    return None


# Flask-HTTPAuth's checks as calls: None when the credentials are right, else its 401.
_require_token = token_auth.login_required(_passed)
_require_basic = basic_auth.login_required(_passed)


def presents_credentials() -> bool:
    """Whether the request tries credentials on a protected route: what the failure windows check."""
    endpoint = request.endpoint
    if not endpoint or endpoint in PUBLIC_ENDPOINTS or endpoint.partition(".")[0] not in PROTECTED_BLUEPRINTS:
        return False
    if endpoint in LOGIN_ENDPOINTS:
        return request.method == "POST"
    return "Authorization" in request.headers


def claimed_account() -> str:
    """The account the request's credentials name: the form's or Basic's user, or the API token."""
    if request.endpoint in LOGIN_ENDPOINTS:
        return request.form.get("username", "")
    auth = request.authorization
    if auth is None:
        return ""
    return (auth.username or "") if auth.type == "basic" else TOKEN_ACCOUNT


def _clear_session() -> None:
    """Drop everything the cookie held, and the CSRF token Flask-WTF cached from it for this request."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def log_in(user: str) -> None:
    """Start a fresh session (no fixation: whatever was in the cookie is dropped) recorded in Redis."""
    _clear_session()
    login_user(Operator(sessions().start(user, _proof()), user))
    session[SESSION_USER] = user


def log_out() -> None:
    """End the session: its record in Redis goes, so a copy of the cookie is refused too."""
    if current_user.is_authenticated:
        sessions().end(current_user.id)
    logout_user()
    _clear_session()


# -- CSRF --------------------------------------------------------------------------------------------


def csrf_token() -> str:
    """The session's CSRF token (Flask-WTF's, signed), for forms and rq-dashboard's cookie."""
    return str(generate_csrf())


def same_origin() -> bool:
    """False when the browser says the request comes from another site (over plain HTTP too,
    where CSRFProtect's Referer check does not run)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _check_csrf() -> Response | None:
    """None when the request carries the session's CSRF token (form field or X-CSRFToken) and is
    same-origin; else a 403."""
    try:
        csrf.protect()
    except CSRFError as exc:
        return _csrf_refused(exc.description)
    return None if same_origin() else _csrf_refused("cross-origin request")


def _csrf_refused(reason: str) -> Response:
    log.warning("csrf check failed remote=%s path=%s reason=%s", request.remote_addr, request.path, reason)
    return error(403, "CSRF token missing or wrong (reload the page and try again)")


# -- the guard ----------------------------------------------------------------------------------------


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error for the API, plain text elsewhere."""
    if request.path.startswith("/api/"):
        response = jsonify({"error": message})
    else:
        response = Response(message + "\n", mimetype="text/plain")
    response.status_code = status
    response.headers.update(headers or {})
    return response


def guard() -> ResponseReturnValue | None:
    """before_request for the whole app: protect every ops and rq-dashboard endpoint."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in PUBLIC_ENDPOINTS:
        return None
    if endpoint.partition(".")[0] not in PROTECTED_BLUEPRINTS:
        return None
    missing = missing_secrets()
    if missing:
        if not current_app.extensions.get("cronwork_ops_refused"):
            current_app.extensions["cronwork_ops_refused"] = True
            log.error(
                "ops surface disabled: %s not set (API, pages and /rq answer 503; /healthz and "
                "/metrics stay open; `make run` generates dev values)",
                ", ".join(missing),
            )
        return error(503, f"ops surface disabled: {', '.join(missing)} not configured")
    if endpoint.startswith("ops.api."):
        return _require_token()  # the session cookie is ignored here: a token or nothing
    if endpoint in LOGIN_ENDPOINTS:
        return None if request.method in SAFE_METHODS else _check_csrf()
    if not current_user.is_authenticated:
        if session.get("_user_id") is not None:
            _clear_session()  # logged out, expired or its credentials changed: drop the stale cookie
        if request.authorization is not None:
            refused = _require_basic()
            if refused is not None:
                return refused
        elif request.method in SAFE_METHODS:
            return redirect(url_for("ops.pages.login", next=request.full_path.rstrip("?")))
        else:
            return error(401, "log in first", {"WWW-Authenticate": f'Basic realm="{REALM}"'})
    if request.method not in SAFE_METHODS:
        return _check_csrf()
    return None


def _record_basic_refusal(user: str) -> None:
    """A wrong HTTP Basic login into the audit trail, as the user it claimed."""
    from app.ops.audit_log import record  # here: app.ops.audit_log imports this module
    from cronwork.audit import Action, Outcome, Source

    source = Source.DASHBOARD if request.blueprint == "rq_dashboard" else Source.PAGE
    record(source, Action.LOGIN_FAILED, actor=user, outcome=Outcome.REFUSED, detail="wrong basic auth")


# -- where to go after a form ---------------------------------------------------------------------


def _unsafe_char(char: str) -> bool:
    """Whitespace, control and format characters: browsers drop some of them from URLs (a tab
    made `/\t/evil.example` into `//evil.example`), and a newline cannot go into a header."""
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Zs")


def safe_next(target: str | None, default: str) -> str:
    """A same-origin absolute path to go back to after a form; anything else → `default`.

    It must start with a single "/" (not "//" or "/\\"), hold no backslash, whitespace or control
    character, raw or percent-encoded, and name no scheme or host; `/ok?x=1` is kept as is.
    """
    if not target or len(target) > 2048:
        return default
    decoded = unquote(target)
    for text in (target, decoded):
        if not text.startswith("/") or text.startswith("//") or "\\" in text:
            return default
        if any(_unsafe_char(char) for char in text):
            return default
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return default
    return target
