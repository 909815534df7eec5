"""Who may use the ops surface: a Bearer token for the API; a login or HTTP Basic for pages and /rq.

Every ops route is protected unless listed in PUBLIC_ENDPOINTS. Cookie sessions and Basic
credentials are ambient (the browser sends them by itself), so every state-changing request
made with them needs the session's CSRF token; a Bearer token is never ambient, so API
calls need none. Without the secrets configured, the ops surface answers 503.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import Response, current_app, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

log = logging.getLogger(__name__)

REQUIRED_SECRETS = ("SECRET_KEY", "ADMIN_TOKEN", "ADMIN_USER", "ADMIN_PASSWORD")
PUBLIC_ENDPOINTS = frozenset({"ops.healthz", "ops.metrics", "static"})
LOGIN_ENDPOINTS = frozenset({"ops.pages.login"})
PROTECTED_BLUEPRINTS = ("ops", "rq_dashboard")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = "Cronwork ops"
SESSION_USER = "ops_user"
SESSION_CSRF = "ops_csrf"
SESSION_PROOF = "ops_proof"
CSRF_FIELD = "csrf_token"
CSRF_HEADERS = ("X-CSRF-Token", "X-CSRFToken")  # the second is what rq-dashboard's JS sends
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


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


def bearer_ok() -> bool:
    """Whether the request carries `Authorization: Bearer <ADMIN_TOKEN>`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _equal(token.strip(), current_app.config["ADMIN_TOKEN"])


def basic_ok() -> bool:
    """Whether the request carries HTTP Basic ADMIN_USER/ADMIN_PASSWORD."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = _equal(auth.username or "", current_app.config["ADMIN_USER"])
    password_ok = _equal(auth.password or "", current_app.config["ADMIN_PASSWORD"])
    return user_ok and password_ok


def credentials_ok(user: str, password: str) -> bool:
    """Whether a login form's user and password are the admin's (both always compared)."""
    user_ok = _equal(user, current_app.config["ADMIN_USER"])
    password_ok = _equal(password, current_app.config["ADMIN_PASSWORD"])
    return user_ok and password_ok


def _proof() -> str:
    """Ties a session to the current credentials: changing the password ends every session."""
    material = f"{current_app.config['ADMIN_USER']}\0{current_app.config['ADMIN_PASSWORD']}"
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


def session_ok() -> bool:
    """Whether the session cookie belongs to a login with the current credentials."""
    user, proof = session.get(SESSION_USER), session.get(SESSION_PROOF)
    return isinstance(user, str) and isinstance(proof, str) and _equal(proof, _proof())


def log_in(user: str) -> None:
    """Start a fresh session (no fixation: whatever was in the cookie is dropped)."""
    session.clear()
    session[SESSION_USER] = user
    session[SESSION_PROOF] = _proof()
    session[SESSION_CSRF] = secrets.token_urlsafe(32)


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return token


def same_origin() -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def csrf_ok() -> bool:
    """The request carries the session's CSRF token (form field or header) and is same-origin."""
    expected = session.get(SESSION_CSRF)
    given = request.form.get(CSRF_FIELD) if request.mimetype in _FORM_TYPES else None
    for header in CSRF_HEADERS:
        given = given or request.headers.get(header)
    return isinstance(expected, str) and bool(given) and _equal(str(given), expected) and same_origin()


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
        if bearer_ok():
            return None
        return error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="api"'})
    if endpoint in LOGIN_ENDPOINTS:
        return None if request.method in SAFE_METHODS or csrf_ok() else _csrf_refused()
    if not (session_ok() or basic_ok()):
        if request.authorization is not None:
            log.warning("ops login refused (basic) remote=%s path=%s", request.remote_addr, request.path)
            _record_basic_refusal()
            return error(401, "wrong credentials", {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        if request.method in SAFE_METHODS:
            return redirect(url_for("ops.pages.login", next=request.full_path.rstrip("?")))
        return error(401, "log in first", {"WWW-Authenticate": f'Basic realm="{REALM}"'})
    if request.method not in SAFE_METHODS and not csrf_ok():
        return _csrf_refused()
    return None


def _record_basic_refusal() -> None:
    """A wrong HTTP Basic login into the audit trail, as the user it claimed."""
    from app.ops.audit_log import record  # here: app.ops.audit_log imports this module
    from cronwork.audit import Action, Outcome, Source

    source = Source.DASHBOARD if request.blueprint == "rq_dashboard" else Source.PAGE
    actor = (request.authorization.username if request.authorization else None) or ""
    record(source, Action.LOGIN_FAILED, actor=actor, outcome=Outcome.REFUSED, detail="wrong basic auth")


def _csrf_refused() -> Response:
    log.warning("csrf check failed remote=%s path=%s", request.remote_addr, request.path)
    return error(403, "CSRF token missing or wrong (reload the page and try again)")


def safe_next(target: str | None, default: str) -> str:
    """A local path to go back to after a form; anything else (//evil, http://…) → default."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
