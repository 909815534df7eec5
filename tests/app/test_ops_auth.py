"""Auth matrix: every ops route × {no credentials, wrong, right, right but no CSRF token}."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from werkzeug.test import TestResponse

from cronwork.serializer import json_queue
from tests.app.conftest import PASSWORD, basic, bearer, csrf_from, log_in, seed_ledger


@dataclass(frozen=True)
class Route:
    """One route and the status it answers to an authorised request."""

    method: str
    path: str
    kind: str  # api | page | rq | public
    ok: int
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/api/schedules", "api", 200),
    Route("GET", "/api/schedules/hc", "api", 200),
    Route("GET", "/api/schedules/hc/next", "api", 200),
    Route("GET", "/api/schedules/hc/history", "api", 200),
    Route("POST", "/api/schedules/hc/run", "api", 202),
    Route("POST", "/api/schedules/hc/pause", "api", 200, {"reason": "matrix"}),
    Route("POST", "/api/schedules/hc/resume", "api", 200),
    Route("GET", "/api/failed", "api", 200),
    Route("POST", "/api/failed/nope/requeue", "api", 404),
    Route("POST", "/api/failed/requeue", "api", 200),
    Route("GET", "/", "page", 200),
    Route("GET", "/schedules/hc", "page", 200),
    Route("POST", "/schedules/hc/pause", "page", 303, {"reason": "matrix"}),
    Route("POST", "/schedules/hc/resume", "page", 303),
    Route("POST", "/schedules/hc/run", "page", 303),
    Route("POST", "/failed/nope/requeue", "page", 303),
    Route("POST", "/logout", "page", 303),
    Route("GET", "/rq/", "rq", 200),
    Route("GET", "/rq/0/view/jobs", "rq", 200),
    Route("GET", "/rq/0/view/workers", "rq", 200),
    Route("GET", "/rq/0/data/queues.json", "rq", 200),
    Route("GET", "/rq/0/data/workers.json", "rq", 200),
    Route("GET", "/rq/static/css/main.css", "rq", 200),
    Route("GET", "/rq/requeue/default", "rq", 405),  # rq-dashboard's requeue-all by GET: refused
    Route("POST", "/rq/requeue/default", "rq", 200),
    Route("POST", "/rq/queue/default/compact", "rq", 200),
    Route("POST", "/rq/queue/default/queued/empty", "rq", 200),
    Route("GET", "/healthz", "public", 503),  # open; unhealthy here (no scheduler, no worker)
    Route("GET", "/metrics", "public", 200),
]
VARIANTS = ["none", "wrong", "right", "no_csrf"]


def call(client: FlaskClient, route: Route, variant: str) -> TestResponse:
    """Send `route` as the variant says: API with a Bearer token, pages and /rq with a login."""
    headers: dict[str, str] = {}
    csrf = None
    if variant == "wrong":
        headers = bearer("wrong-token") if route.kind == "api" else basic(password="wrong")
    elif variant in ("right", "no_csrf"):
        if route.kind in ("api", "public"):
            headers = bearer()
        else:
            token = log_in(client)
            csrf = token if variant == "right" else None
    if route.method == "GET":
        return client.get(route.path, headers=headers)
    if route.kind == "api":
        return client.post(route.path, headers=headers, json=route.body or None)
    if route.kind == "rq":  # rq-dashboard's JS sends the token as a header (dashboard.js)
        return client.post(route.path, headers={**headers, **({"X-CSRFToken": csrf} if csrf else {})})
    form = {**route.body, **({"csrf_token": csrf} if csrf else {})}
    return client.post(route.path, headers=headers, data=form)


def expected(route: Route, variant: str) -> int:
    if route.kind == "public" or variant == "right":
        return route.ok
    if variant == "no_csrf":
        return route.ok if route.method == "GET" or route.kind == "api" else 403
    if variant == "none" and route.kind in ("page", "rq") and route.method == "GET":
        return 302  # to the login form
    return 401


@pytest.fixture
def queued(redis: Redis) -> str:
    """A job waiting on the default queue (rq-dashboard's compact fails on a queue never used)."""
    return json_queue("default", redis).enqueue("jobs.diagnostics.count_users").id


@pytest.mark.usefixtures("registered", "queued")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_auth_matrix(client: FlaskClient, route: Route, variant: str) -> None:
    response = call(client, route, variant)
    body = response.get_data(as_text=True)
    response.close()  # static files are streamed from an open file
    assert response.status_code == expected(route, variant), body[:300]
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login?next=")
    if route.kind == "api" and response.status_code >= 400:
        assert "error" in response.get_json()


@pytest.mark.parametrize(
    ("variant", "status"), [("none", 401), ("wrong", 401), ("right", 303), ("no_csrf", 403)]
)
def test_login_form_matrix(client: FlaskClient, variant: str, status: int) -> None:
    assert client.get("/login").status_code == 200
    token = csrf_from(client.get("/login").get_data(as_text=True))
    form = {"none": {}, "wrong": {"username": "ops-admin", "password": "nope"}}.get(
        variant, {"username": "ops-admin", "password": PASSWORD}
    )
    if variant != "no_csrf":
        form["csrf_token"] = token
    response = client.post("/login", data=form)
    assert response.status_code == status
    assert (client.get("/").status_code == 200) is (variant == "right")


@pytest.mark.usefixtures("registered")
def test_http_basic_works_for_pages_and_still_needs_csrf_to_post(client: FlaskClient, redis: Redis) -> None:
    page = client.get("/", headers=basic())
    assert page.status_code == 200
    assert client.post("/schedules/hc/pause", headers=basic(), data={"reason": "x"}).status_code == 403
    token = csrf_from(page.get_data(as_text=True))
    ok = client.post("/schedules/hc/pause", headers=basic(), data={"reason": "x", "csrf_token": token})
    assert ok.status_code == 303
    assert redis.hexists("cronwork:paused", "hc")
    assert client.get("/rq/", headers=basic()).status_code == 200


@pytest.mark.usefixtures("registered")
def test_api_ignores_the_session_cookie(client: FlaskClient) -> None:
    log_in(client)
    assert client.get("/api/schedules").status_code == 401


@pytest.mark.usefixtures("registered")
def test_cross_origin_post_is_refused_even_with_the_token(client: FlaskClient) -> None:
    token = log_in(client)
    data = {"reason": "x", "csrf_token": token}
    evil = client.post("/schedules/hc/pause", data=data, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    cross = client.post("/schedules/hc/pause", data=data, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    same = client.post("/schedules/hc/pause", data=data, headers={"Origin": "http://localhost"})
    assert same.status_code == 303


@pytest.mark.usefixtures("registered")
def test_dashboard_pages_hand_their_js_the_session_csrf_token(client: FlaskClient) -> None:
    log_in(client)
    client.get("/rq/")
    cookie = client.get_cookie("_csrf_token", path="/rq")
    assert cookie is not None  # Flask-WTF signs each copy anew: the server checks it, not equality
    assert client.post("/rq/requeue/default", headers={"X-CSRFToken": "forged"}).status_code == 403
    assert client.post("/rq/requeue/default", headers={"X-CSRFToken": cookie.value}).status_code == 200


@pytest.mark.usefixtures("registered")
def test_dashboard_is_never_served_in_debug_mode(ops_app: Flask, client: FlaskClient) -> None:
    ops_app.debug = True
    try:
        assert client.get("/rq/", headers=basic()).status_code == 503
    finally:
        ops_app.debug = False


def test_changing_the_password_ends_every_session(ops_app: Flask, client: FlaskClient) -> None:
    log_in(client)
    assert client.get("/").status_code == 200
    ops_app.config["ADMIN_PASSWORD"] = "rotated password"
    assert client.get("/").status_code == 302


def test_login_never_redirects_off_site(client: FlaskClient) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        form = {"username": "ops-admin", "password": PASSWORD, "csrf_token": token, "next": target}
        response = client.post("/login", data=form)
        assert response.headers["Location"] == "/"
        token = csrf_from(client.get("/login").get_data(as_text=True))


@pytest.mark.parametrize("route", [r for r in ROUTES if r.kind != "public"], ids=str)
def test_without_secrets_the_ops_surface_answers_503(app: Flask, route: Route) -> None:
    app.config.update(ADMIN_TOKEN="", ADMIN_USER="", ADMIN_PASSWORD="")
    client = app.test_client()
    assert client.open(route.path, method=route.method, headers=bearer("")).status_code == 503
    assert client.get("/login").status_code == 503


def test_without_secrets_health_and_metrics_stay_open_and_one_line_is_logged(
    app: Flask, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # logging.config.fileConfig (Alembic's env.py) disables loggers that exist before it runs.
    monkeypatch.setattr(logging.getLogger("app.ops.auth"), "disabled", False)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="app.ops.auth"):
        for _ in range(3):
            assert client.get("/api/schedules").status_code == 503
            assert client.get("/").status_code == 503
    lines = [r.getMessage() for r in caplog.records if r.name == "app.ops.auth"]
    assert len(lines) == 1
    assert "ADMIN_TOKEN, ADMIN_USER, ADMIN_PASSWORD not set" in lines[0]
    assert client.get("/metrics").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/healthz").get_json()["checks"]["redis"]["ok"] is True


@pytest.mark.usefixtures("registered")
def test_pages_and_api_carry_security_headers(client: FlaskClient) -> None:
    assert "SameSite=Lax" in client.get("/login").headers["Set-Cookie"]
    log_in(client)
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    api = client.get("/api/schedules", headers=bearer())
    assert api.headers["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("registered", "queued")
def test_no_get_changes_state(client: FlaskClient, redis: Redis) -> None:
    seed_ledger(redis, "hc", ["succeeded", "failed"])

    def snapshot() -> dict[bytes, bytes | None]:
        return {key: redis.dump(key) for key in redis.scan_iter()}

    token = log_in(client)  # a login is an action: the audit trail records it
    before = snapshot()
    for route in ROUTES:
        if route.method == "GET":
            headers = bearer() if route.kind == "api" else {"X-CSRFToken": token}
            client.get(route.path, headers=headers).close()
    assert snapshot() == before
