"""rq-dashboard gets the app's Redis (direct or through Sentinel) with timeouts, never a default;
its templates render data escaped, its pages carry a strict CSP, unknown ids are 404 (issue 13)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import rq_dashboard
from flask import Flask
from flask.testing import FlaskClient
from redis_sentinel_url import parse_sentinel_url

from app.config import PROJECT_ROOT
from app.ops import PAGE_CSP
from app.ops.dashboard import OVERRIDDEN_TEMPLATES, dashboard_redis_url
from tests.app.conftest import basic


def test_direct_url_keeps_password_and_db_and_gains_timeouts() -> None:
    url = dashboard_redis_url({"REDIS_URL": "redis://:s3cret@cache:6380/2"})
    assert url == "redis://:s3cret@cache:6380/2?socket_timeout=5.0&socket_connect_timeout=2.0"


def test_sentinel_settings_become_a_sentinel_url_rq_dashboard_can_parse() -> None:
    config = {
        "REDIS_URL": "redis://:s3cret@ignored:6379/3",
        "REDIS_SENTINELS": "s1:26379, s2:26380",
        "REDIS_SENTINEL_MASTER": "cronwork",
    }
    parsed = parse_sentinel_url(dashboard_redis_url(config))
    assert parsed.hosts == [("s1", 26379), ("s2", 26380)]
    assert parsed.default_client.service == "cronwork"
    assert parsed.client_options == {
        "password": "s3cret",
        "db": 3,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
    }


# -- No script from data (issue 13): template overrides, CSP, 404s -------------------------------

RQ_TEMPLATES = Path(rq_dashboard.__file__).parent / "templates"
OUR_TEMPLATES = PROJECT_ROOT / "app" / "templates"
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)


@pytest.mark.parametrize("name", sorted(OVERRIDDEN_TEMPLATES))
def test_each_override_shadows_the_installed_original_it_was_copied_from(ops_app: Flask, name: str) -> None:
    original = RQ_TEMPLATES / name
    assert original.is_file(), f"rq-dashboard has no {name} any more: review app/templates/{name}"
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    assert digest == OVERRIDDEN_TEMPLATES[name], (
        f"rq-dashboard's {name} changed since our override was copied from it: copy it again into "
        f"app/templates/{name}, redo the changes listed in app/ops/dashboard.py, update the hash"
    )
    loaded = ops_app.jinja_env.get_template(name).filename
    assert loaded is not None and Path(loaded) == OUR_TEMPLATES / name


def test_no_template_rq_dashboard_renders_interpolates_data_unescaped() -> None:
    """underscore's `<%= %>` writes raw HTML: none is left where our overrides apply, and any new
    template of rq-dashboard that has one must be overridden too."""
    for path in sorted(RQ_TEMPLATES.rglob("*.*")):
        name = path.relative_to(RQ_TEMPLATES).as_posix()
        effective = OUR_TEMPLATES / name if name in OVERRIDDEN_TEMPLATES else path
        assert "<%=" not in effective.read_text(), f"{effective}: use <%- %> (escaped)"
    for name in OVERRIDDEN_TEMPLATES:
        assert (OUR_TEMPLATES / name).is_file(), name


def test_script_templates_put_values_into_javascript_as_json_only() -> None:
    """Flask does not autoescape .js templates: every value they print goes through |tojson."""
    for path in sorted((RQ_TEMPLATES / "rq_dashboard" / "scripts").glob("*.js")):
        name = path.relative_to(RQ_TEMPLATES).as_posix()
        source = (OUR_TEMPLATES / name if name in OVERRIDDEN_TEMPLATES else path).read_text()
        for expression in re.findall(r"{{(.*?)}}", source):
            assert "|tojson" in expression.replace(" ", ""), f"{name}: {{{{{expression}}}}}"


def test_dashboard_pages_carry_a_strict_csp_whose_nonce_is_on_their_one_inline_script(
    client: FlaskClient, registered: list[str]
) -> None:
    nonces = set()
    for path in ("/rq/", "/rq/0/view/workers", "/rq/0/view/jobs/default/failed/8/asc/1"):
        response = client.get(path, headers=basic())
        assert response.status_code == 200, path
        policy = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
        nonce = re.fullmatch(r"'self' 'nonce-([\w-]+)' 'unsafe-eval'", policy["script-src"])
        assert nonce, policy
        assert (policy["object-src"], policy["base-uri"], policy["frame-ancestors"]) == ("'none'",) * 3
        assert policy["form-action"] == "'self'" and policy["default-src"] == "'self'"
        assert "unsafe-inline" not in policy["script-src"] and "unsafe-inline" not in policy["style-src"]
        inline = [a for a in SCRIPT_TAG.findall(response.get_data(as_text=True)) if "src=" not in a and "text/template" not in a]
        assert inline == [f' type="text/javascript" nonce="{nonce[1]}"'], path
        nonces.add(nonce[1])
    assert len(nonces) == 3  # one per response
    data = client.get("/rq/0/data/queues.json", headers=basic())
    assert "nonce-" not in data.headers["Content-Security-Policy"]  # no inline script there
    # The ops pages keep theirs.
    assert client.get("/", headers=basic()).headers["Content-Security-Policy"] == PAGE_CSP


def test_a_queue_name_from_the_url_stays_a_javascript_string(client: FlaskClient, registered: list[str]) -> None:
    response = client.get("/rq/0/view/jobs/x');window.__x=1;('/queued/8/asc/1", headers=basic())
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "$(this).val(\"x\\u0027);window.__x=1;(\\u0027\");" in page
    assert "');window" not in page


@pytest.mark.parametrize(
    "path",
    [
        "/rq/0/view/job/absent",
        "/rq/0/data/job/absent.json",
        "/rq/0/view/jobs/default/nosuch/8/asc/1",
        "/rq/0/data/jobs/default/nosuch/8/asc/1.json",
        "/rq/0/data/jobs/default/queued/abc/asc/1.json",
        "/rq/0/data/jobs/default/queued/0/asc/1.json",
        "/rq/0/data/jobs/default/failed/8/asc/0.json",
        "/rq/0/data/jobs/default/failed/-5/asc/1.json",
        "/rq/0/view/jobs/default/queued/0/asc/1",
    ],
)
def test_unknown_jobs_registries_and_pages_are_404(client: FlaskClient, registered: list[str], path: str) -> None:
    response = client.get(path, headers=basic())
    assert response.status_code == 404, response.get_data(as_text=True)
    assert "Content-Security-Policy" in response.headers


def test_a_password_in_the_redis_url_query_is_never_shown_on_rq_pages(
    ops_app: Flask, client: FlaskClient, registered: list[str]
) -> None:
    """rq-dashboard masks only the userinfo of the URLs it lists; a `?password=` was shown whole."""
    url = ops_app.config["RQ_DASHBOARD_REDIS_URL"][0]
    ops_app.config["RQ_DASHBOARD_REDIS_URL"] = (f"{url}&password=hunter2-secret",)
    page = client.get("/rq/", headers=basic()).get_data(as_text=True)
    assert "password=***" in page
    assert "hunter2" not in page
