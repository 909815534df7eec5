"""Ops surface: health, metrics, the JSON API, the pages and rq-dashboard, all behind app.ops.auth."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Flask, Response, request
from flask.blueprints import BlueprintSetupState

ops_blueprint = Blueprint("ops", __name__)
api_blueprint = Blueprint("api", __name__, url_prefix="/api")
pages_blueprint = Blueprint("pages", __name__)
# Ops pages only load their own CSS and JS; no framing (the buttons change state).
PAGE_CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

from app.ops import api, health, metrics, pages  # noqa: E402,F401  (registers the routes)
from app.ops.auth import init_auth  # noqa: E402
from app.ops.dashboard import dashboard_csp, is_dashboard_path, mount_dashboard  # noqa: E402
from app.ops.errors import register_error_pages  # noqa: E402

ops_blueprint.register_blueprint(api_blueprint)
ops_blueprint.register_blueprint(pages_blueprint)


@ops_blueprint.record_once
def _setup(state: BlueprintSetupState) -> None:
    """Once per app: the auth guard, rq-dashboard, the metrics registry, cookie and error policy."""
    # Flask types state.app as its sansio base App; this blueprint is only registered on a Flask.
    app = cast(Flask, state.app)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    init_auth(app)  # CSRF, login, failure limits, then the guard: every later hook runs authenticated
    mount_dashboard(app)
    app.extensions[metrics.EXTENSION] = metrics.build_registry(app)
    register_error_pages(app)  # HTTP errors as pages or JSON; Redis or database down: 503
    app.after_request(_headers)


def _headers(response: Response) -> Response:
    """Security and caching headers for ops responses."""
    endpoint = request.endpoint or ""
    if endpoint.startswith(("ops.api.", "ops.pages.")):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    if endpoint.startswith("ops.pages."):
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    if is_dashboard_path(request.path):
        # rq-dashboard's pages: its own scripts and our nonce only (issue 13); an error page
        # (app.ops.errors) keeps the stricter PAGE_CSP it set.
        response.headers.setdefault("Content-Security-Policy", dashboard_csp())
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
