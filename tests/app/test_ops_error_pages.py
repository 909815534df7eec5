"""Error pages: 404/500/503 inside the ops layout for pages, JSON for the API and JSON clients;
Redis or the database down answers 503 naming the part (password masked) everywhere."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.app.conftest import PASSWORD, TOKEN, USER, basic, bearer, log_in


def test_a_missing_page_is_a_page_with_a_way_back(client: FlaskClient) -> None:
    anonymous = client.get("/no/such/page")
    assert anonymous.status_code == 404 and anonymous.mimetype == "text/html"
    html = anonymous.get_data(as_text=True)
    assert 'data-status="404"' in html and "Back to the schedules" in html
    assert "Log out" not in html  # no navigation for someone not logged in
    assert anonymous.headers["Content-Security-Policy"].startswith("default-src 'self'")

    log_in(client)
    html = client.get("/schedules/nope").get_data(as_text=True)
    assert "unknown schedule &#39;nope&#39;" in html and "Log out" in html


def test_the_api_keeps_json_errors(client: FlaskClient) -> None:
    missing = client.get("/api/nothing", headers=bearer())
    assert missing.status_code == 404 and missing.get_json() == {"error": missing.get_json()["error"]}
    wrong = client.delete("/api/schedules", headers=bearer())
    assert wrong.status_code == 405 and "Allow" in wrong.headers and wrong.is_json


def test_an_internal_error_is_a_page_without_the_exception_text(ops_app: Flask) -> None:
    ops_app.testing = False  # as in production: the error is handled, not raised into the test

    @ops_app.get("/boom-for-test")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = ops_app.test_client().get("/boom-for-test")
    html = response.get_data(as_text=True)
    assert response.status_code == 500 and "Something went wrong" in html and "secret" not in html


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_down(database_url: str) -> Iterator[tuple[FlaskClient, str]]:
    """An app whose Redis (with a password in its URL) is not running."""
    port = _free_port()
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "test-secret",
            "ADMIN_TOKEN": TOKEN,
            "ADMIN_USER": USER,
            "ADMIN_PASSWORD": PASSWORD,
        }
    )
    with app.test_client() as client:
        yield client, f"redis://:***@127.0.0.1:{port}/0"
    with app.app_context():
        db.engine.dispose()


def test_redis_down_is_a_503_naming_redis_on_pages_api_and_rq(redis_down: tuple[FlaskClient, str]) -> None:
    client, where = redis_down
    expected = f"Redis at {where} is not answering."
    for path in ("/", "/schedules/hc", "/rq/", "/rq/0/view/workers"):
        page = client.get(path, headers={**basic(), "Accept": "text/html"})
        html = page.get_data(as_text=True)
        assert page.status_code == 503, (path, html[:300])
        assert expected in html and "hunter2" not in html and 'data-status="503"' in html, path
    api = client.get("/api/schedules", headers=bearer())
    assert api.status_code == 503 and api.get_json() == {"error": expected}
    polled = client.get("/rq/0/data/queues.json", headers={**basic(), "Accept": "application/json"})
    assert polled.status_code == 503 and polled.get_json() == {"error": expected}
    probe = client.get("/healthz")
    assert probe.status_code == 503 and where in probe.get_json()["checks"]["redis"]["error"]


def test_database_down_is_a_503_naming_the_database(redis_url: str) -> None:
    url = "sqlite:////nonexistent-dir/cronwork.db"
    app = create_app(
        {"TESTING": True, "REDIS_URL": redis_url, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-secret"}
    )

    @app.get("/db-for-test")
    def uses_the_database() -> str:
        db.session.execute(text("SELECT 1"))
        return "ok"

    response = app.test_client().get("/db-for-test", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert f"The database at {url} is not answering (OperationalError)" in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()
