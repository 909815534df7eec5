"""The ops surface against a hostile browser and a patient guesser (issue 13): redirects, CSRF,
failed-login lockouts (logged, counted in /metrics), sessions that end. In-process against the
real Redis; the last test plays the guesser and the cookie thief against a real gunicorn."""

from __future__ import annotations

import http.cookiejar
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from werkzeug.test import TestResponse

from app.embedded_redis import free_port
from app.extensions import cronwork
from tests.app.conftest import KEYS, PASSWORD, TOKEN, USER, basic, bearer, csrf_from, log_in, ops_env
from tests.conftest import Processes, wait_until

GUESSES = 50
# Wide enough that 50 guesses fit in one window even on a loaded machine, short enough to
# leave nothing behind (each test has its own Redis anyway).
TEST_LIMIT = "5 per 30 seconds"
SCHEMES = ("form", "basic", "bearer")
EVIL_NEXT = [
    "/\t/evil.example",  # what `next=/%09/evil.example` decodes to: browsers drop the tab
    "/%09/evil.example",
    "/\n/evil.example",
    "/%0a/evil.example",
    "/%0d%0aSet-Cookie:%20x=1",
    "/x\r\nSet-Cookie: x=1",
    "//evil.example",
    "/\\evil.example",
    "/%5Cevil.example",
    "/%2F/evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    " /schedules/hc",
    "/schedules/hc x",
    "/\u2028/evil.example",
    "/\u202e/evil.example",
    "",
]
KEPT_NEXT = ["/ok?x=1", "/schedules/hc", "/", "/schedules/h%C3%A9"]


@pytest.fixture(autouse=True)
def _loggers_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    # logging.config.fileConfig (Alembic's env.py) disables loggers that exist before it runs.
    for name in ("app.ops.limits", "app.ops.auth"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)


@pytest.fixture
def guarded(ops_app: Flask) -> Flask:
    """The ops app with a lockout after 5 failures (per client and per account)."""
    ops_app.config["AUTH_FAILURE_LIMIT"] = TEST_LIMIT
    return ops_app


def env(remote: str) -> dict[str, str]:
    return {"REMOTE_ADDR": remote}


def attempt(client: FlaskClient, scheme: str, secret: str, *, user: str = USER, remote: str = "10.0.0.1") -> TestResponse:
    """One try of `secret` (a password, or the API token) through `scheme` from address `remote`."""
    if scheme == "form":
        token = csrf_from(client.get("/login", environ_base=env(remote)).get_data(as_text=True))
        form = {"username": user, "password": secret, "csrf_token": token}
        return client.post("/login", data=form, environ_base=env(remote))
    if scheme == "basic":
        return client.get("/", headers=basic(user, secret), environ_base=env(remote))
    return client.get("/api/schedules", headers=bearer(secret), environ_base=env(remote))


def right(scheme: str) -> str:
    return TOKEN if scheme == "bearer" else PASSWORD


def accepted(response: TestResponse) -> bool:
    return response.status_code in (200, 303)


def metric(client: FlaskClient, series: str) -> float:
    """The value of one series of /metrics (0 when absent)."""
    text = client.get("/metrics").get_data(as_text=True)
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def session_keys(redis: Redis) -> list[bytes]:
    return list(redis.scan_iter(match=KEYS.ops_session("*")))


# -- redirects --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", EVIL_NEXT, ids=repr)
def test_login_and_action_forms_never_redirect_off_site_nor_fail(client: FlaskClient, redis: Redis, target: str) -> None:
    form_page = client.get("/login", query_string={"next": target})
    assert form_page.status_code == 200
    assert 'name="next" value="/"' in form_page.get_data(as_text=True)
    token = csrf_from(form_page.get_data(as_text=True))
    login = client.post(
        "/login", data={"username": USER, "password": PASSWORD, "csrf_token": token, "next": target}
    )
    assert (login.status_code, login.headers["Location"]) == (303, "/")
    token = csrf_from(client.get("/").get_data(as_text=True))
    action = client.post("/schedules/hc/run", data={"csrf_token": token, "next": target})
    # The redirect falls back to the list; the action was applied once, with no 500 after it.
    assert (action.status_code, action.headers["Location"]) == (303, "/")
    assert client.get("/").status_code == 200


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("target", KEPT_NEXT)
def test_a_local_path_is_kept_as_the_redirect(client: FlaskClient, target: str) -> None:
    token = log_in(client)
    action = client.post("/schedules/hc/resume", data={"csrf_token": token, "next": target})
    assert (action.status_code, action.headers["Location"]) == (303, target)


# -- CSRF -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("registered")
def test_state_changing_requests_need_this_sessions_csrf_token(ops_app: Flask, client: FlaskClient, redis: Redis) -> None:
    token = log_in(client)
    with ops_app.test_client() as other:
        foreign = log_in(other)
    assert client.post("/schedules/hc/pause", data={"reason": "x"}).status_code == 403
    assert client.post("/schedules/hc/pause", data={"reason": "x", "csrf_token": "forged"}).status_code == 403
    assert client.post("/schedules/hc/pause", data={"reason": "x", "csrf_token": foreign}).status_code == 403
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert client.post("/schedules/hc/pause", data={"reason": "x", "csrf_token": token}, headers=cross).status_code == 403
    assert client.post("/rq/requeue/default", headers={"X-CSRFToken": foreign}).status_code == 403
    assert not redis.hexists(KEYS.paused, "hc")
    client.get("/rq/")
    cookie = client.get_cookie("_csrf_token", path="/rq")
    assert cookie is not None
    assert client.post("/rq/requeue/default", headers={"X-CSRFToken": cookie.value}).status_code == 200
    assert client.post("/schedules/hc/pause", data={"reason": "x", "csrf_token": token}).status_code == 303
    assert redis.hexists(KEYS.paused, "hc")


def test_the_login_form_needs_its_own_csrf_token_and_logout_drops_it(ops_app: Flask, client: FlaskClient) -> None:
    with ops_app.test_client() as other:
        foreign = csrf_from(other.get("/login").get_data(as_text=True))
    client.get("/login")
    form = {"username": USER, "password": PASSWORD}
    assert client.post("/login", data=form).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": foreign}).status_code == 403
    token = log_in(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    log_in(client)
    assert client.post("/schedules/hc/run", data={"csrf_token": token}).status_code == 403


def test_the_api_needs_no_csrf_token_with_its_bearer_token(client: FlaskClient, registered: list[str]) -> None:
    assert client.post("/api/schedules/hc/pause", json={"reason": "x"}, headers=bearer()).status_code == 200


# -- guessing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fifty_guesses_lock_the_guesser_out_visibly(
    guarded: Flask, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = guarded.test_client()
    wrong = "not-the-secret-7f3a"
    with caplog.at_level(logging.WARNING, logger="app.ops.limits"):
        statuses = [attempt(client, scheme, wrong).status_code for _ in range(GUESSES)]
        refused = attempt(client, scheme, right(scheme))
    assert statuses == [401] * 5 + [429] * (GUESSES - 5)
    # Even the right credentials wait for the window, and are told how long.
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    failures = [r.getMessage() for r in caplog.records if "ops auth failure" in r.getMessage()]
    assert len(failures) == 5
    assert all(f"scheme={scheme} " in line and "remote=10.0.0.1" in line for line in failures)
    if scheme != "bearer":
        assert all(f'user="{USER}"' in line for line in failures)
    lockouts = [r.getMessage() for r in caplog.records if "ops auth lockout" in r.getMessage()]
    assert len(lockouts) == 1 and "scope=client" in lockouts[0]
    assert wrong not in caplog.text and PASSWORD not in caplog.text and TOKEN not in caplog.text
    assert metric(client, f'cronwork_auth_failures_total{{scheme="{scheme}"}}') == 5
    assert metric(client, 'cronwork_auth_lockouts_total{scope="client"}') == 1
    # The account is locked too: from another address, the right credentials wait as well (the
    # API has one account, its token: a token guesser holds back every API client).
    assert attempt(guarded.test_client(), scheme, right(scheme), remote="10.9.9.9").status_code == 429
    # The open endpoints are never locked out, whatever the request carries.
    assert client.get("/metrics", headers=basic(password=wrong), environ_base=env("10.0.0.1")).status_code == 200
    assert client.get("/healthz", headers=bearer(wrong), environ_base=env("10.0.0.1")).status_code in (200, 503)


@pytest.mark.parametrize("scheme", ["form", "basic"])
def test_guesses_from_many_addresses_lock_the_account_not_its_sessions(guarded: Flask, scheme: str) -> None:
    with guarded.test_client() as operator:
        log_in(operator)
        client = guarded.test_client()
        statuses = [attempt(client, scheme, "guess", remote=f"10.1.0.{i}").status_code for i in range(20)]
        assert statuses == [401] * 5 + [429] * 15
        assert attempt(client, scheme, PASSWORD, remote="10.2.0.1").status_code == 429
        assert attempt(client, scheme, PASSWORD, user="someone-else", remote="10.2.0.2").status_code == 401
        assert operator.get("/").status_code == 200  # a login made before goes on
        assert metric(client, 'cronwork_auth_lockouts_total{scope="account"}') == 1


@pytest.mark.parametrize("scheme", ["form", "basic"])
def test_guesses_at_many_accounts_lock_the_address_out(guarded: Flask, scheme: str) -> None:
    client = guarded.test_client()
    for i in range(10):
        attempt(client, scheme, "guess", user=f"user{i}")
    assert attempt(client, scheme, right(scheme)).status_code == 429
    assert accepted(attempt(guarded.test_client(), scheme, right(scheme), remote="10.9.9.9"))


def test_the_lockout_ends_with_its_window(guarded: Flask) -> None:
    guarded.config["AUTH_FAILURE_LIMIT"] = "2 per 1 second"
    client = guarded.test_client()
    assert [attempt(client, "basic", "guess").status_code for _ in range(3)] == [401, 401, 429]
    wait_until(lambda: attempt(client, "basic", PASSWORD).status_code == 200, timeout=10)


def test_the_default_lockout_grows_from_a_minute_to_fifteen(ops_app: Flask) -> None:
    client = ops_app.test_client()
    statuses = [attempt(client, "basic", "guess").status_code for _ in range(6)]
    first = attempt(client, "basic", PASSWORD)
    assert statuses == [401] * 5 + [429] and first.status_code == 429
    assert 1 <= int(first.headers["Retry-After"]) <= 60
    # A minute later the second window (10 in 15 minutes) is what holds: 5 more tries, then 15 min.
    with time_machine.travel(time.time() + 61, tick=False):
        later = [attempt(client, "basic", "guess").status_code for _ in range(6)]
        second = attempt(client, "basic", PASSWORD)
    assert later == [401] * 5 + [429]
    assert 13 * 60 <= int(second.headers["Retry-After"]) <= 15 * 60  # from the first failure


# -- sessions ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("registered")
def test_a_cookie_copied_before_logout_is_refused_after_it(ops_app: Flask, client: FlaskClient, redis: Redis) -> None:
    token = log_in(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = ops_app.test_client()
    thief.set_cookie("session", cookie.value)
    assert thief.get("/").status_code == 200  # the copy works while the login lives
    assert len(session_keys(redis)) == 1
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert session_keys(redis) == []
    thief.set_cookie("session", cookie.value)
    replay = thief.get("/")
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")
    thief.set_cookie("session", cookie.value)
    assert thief.post("/schedules/hc/pause", data={"reason": "x", "csrf_token": token}).status_code == 401
    assert not redis.hexists(KEYS.paused, "hc")


def test_a_session_ends_after_its_idle_time(ops_app: Flask, client: FlaskClient, redis: Redis) -> None:
    ops_app.config["SESSION_IDLE_TIMEOUT"] = 1.0
    log_in(client)
    assert client.get("/").status_code == 200
    wait_until(lambda: not session_keys(redis), timeout=10)  # Redis expires the idle record
    assert client.get("/").status_code == 302


def test_a_session_ends_after_its_lifetime_even_when_busy(ops_app: Flask, client: FlaskClient, redis: Redis) -> None:
    log_in(client)
    with time_machine.travel(time.time() + ops_app.config["SESSION_LIFETIME"] - 60, tick=False):
        assert client.get("/").status_code == 200
    with time_machine.travel(time.time() + ops_app.config["SESSION_LIFETIME"] + 1, tick=False):
        assert client.get("/").status_code == 302
    assert session_keys(redis) == []


def test_changing_the_password_ends_sessions_for_good(ops_app: Flask, client: FlaskClient, redis: Redis) -> None:
    log_in(client)
    ops_app.config["ADMIN_PASSWORD"] = "another correct horse battery"
    assert client.get("/").status_code == 302
    assert session_keys(redis) == []
    ops_app.config["ADMIN_PASSWORD"] = PASSWORD  # changing it back does not revive the session
    assert client.get("/").status_code == 302


def test_a_logged_in_operator_gets_the_503_naming_redis_when_it_stops(
    ops_app: Flask, client: FlaskClient
) -> None:
    log_in(client)
    # The session's record is where Redis is: point the app at a port where nothing listens.
    cronwork.use_connection(ops_app, Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"))
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 503 and "is not answering" in page.get_data(as_text=True)
    assert client.get("/login").status_code == 503


def test_a_login_starts_a_new_session(client: FlaskClient, redis: Redis) -> None:
    client.get("/login")
    before = client.get_cookie("session")
    log_in(client)
    after = client.get_cookie("session")
    assert before is not None and after is not None and before.value != after.value
    assert len(session_keys(redis)) == 1


# -- against gunicorn -------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _send(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.mark.slow
def test_under_gunicorn_a_guesser_is_locked_out_and_a_logged_out_cookie_is_refused(
    processes: Processes, schedule_file: Path
) -> None:
    web, base = processes.start_web(
        **ops_env(SECRET_KEY="security-test-secret-9b7d5e3c1a2f4e6d8c0b", SCHEDULE_FILE=str(schedule_file))
    )
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    token = csrf_from(_send(browser, f"{base}/login")[2])
    status, headers, _ = _send(browser, f"{base}/login", {"username": USER, "password": PASSWORD, "csrf_token": token})
    assert (status, headers["Location"]) == (303, "/")
    cookie = next(c.value for c in jar if c.name == "session")
    thief = urllib.request.build_opener(_NoRedirect)
    stolen = {"Cookie": f"session={cookie}"}
    assert _send(thief, f"{base}/", headers=stolen)[0] == 200
    page = _send(browser, f"{base}/")[2]
    assert _send(browser, f"{base}/logout", {"csrf_token": csrf_from(page)})[0] == 303
    status, headers, _ = _send(thief, f"{base}/", headers=stolen)
    assert status == 302 and headers["Location"].startswith("/login")

    guesser = urllib.request.build_opener(_NoRedirect)
    statuses = [_send(guesser, f"{base}/", headers=basic(password=f"guess{i}"))[0] for i in range(GUESSES)]
    assert statuses == [401] * 5 + [429] * (GUESSES - 5)
    status, headers, _ = _send(guesser, f"{base}/", headers=basic())
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
    metrics = _send(guesser, f"{base}/metrics")[2]
    assert 'cronwork_auth_failures_total{scheme="basic"} 5.0' in metrics
    assert 'cronwork_auth_lockouts_total{scope="client"} 1.0' in metrics
    wait_until(lambda: processes.output(web).count("ops auth failure scheme=basic") == 5, timeout=10)
    output = processes.output(web)
    assert output.count("ops auth lockout scope=client") == 1
    assert "guess1" not in output and PASSWORD not in output
