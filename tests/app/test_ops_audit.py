"""The audit trail (issue 12): an action from each of the four sources — a page's form, the API,
the CLI, rq-dashboard — is recorded with who, when, what and from where, and shown by
/api/audit, GET /api/schedules/<name> and the schedule's page; logins too."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from redis import Redis

from app.config import PROJECT_ROOT
from app.ops.audit_log import os_user
from cronwork.serializer import json_queue
from tests.app.conftest import KEYS, PASSWORD, USER, basic, bearer, csrf_from, log_in, ops_env
from tests.conftest import Processes, wait_until

pytestmark = pytest.mark.usefixtures("registered")

XSS = "<script>alert('pwned')</script>"
UNREGISTERED = "not registered (disabled or unsynced)"


def trail(client: FlaskClient, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/audit{query}", headers=bearer())
    assert response.status_code == 200, response.get_data(as_text=True)
    entries: list[dict[str, Any]] = response.get_json()["entries"]
    return entries


def test_an_action_from_each_of_the_four_sources_is_in_the_trail_and_on_the_page(
    client: FlaskClient, ops_app: Flask, redis: Redis
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    token = log_in(client)
    # 1. a page's form
    paused = client.post("/schedules/hc/pause", data={"reason": XSS, "csrf_token": token})
    assert paused.status_code == 303
    # 2. the API
    assert client.post("/api/schedules/hc/resume", headers=bearer()).status_code == 200
    # 3. the CLI
    ran = ops_app.test_cli_runner().invoke(args=["schedules", "run", "hc"])
    assert ran.exit_code == 0, ran.output
    [job_id] = json_queue("default", redis).job_ids
    # 4. rq-dashboard's delete button on that run
    deleted = client.post(f"/rq/job/{job_id}/delete", headers={"X-CSRFToken": token})
    assert deleted.status_code == 200 and deleted.get_json() == {"status": "OK"}

    entries = trail(client, "?schedule=hc")
    got = [(e["source"], e["action"], e["actor"], e["remote"], e["outcome"]) for e in entries]
    assert got == [
        ("dashboard", "delete", USER, "127.0.0.1", "ok"),
        ("cli", "run_now", os_user(), None, "ok"),
        ("api", "resume", "token", "127.0.0.1", "ok"),
        ("page", "pause", USER, "127.0.0.1", "ok"),
    ]
    assert entries[0]["target"] == entries[1]["target"] == job_id and entries[3]["detail"] == XSS
    assert all(before <= datetime.fromisoformat(e["at"]) <= datetime.now(UTC) for e in entries)
    assert [e["action"] for e in trail(client)] == ["delete", "run_now", "resume", "pause", "login"]
    assert client.get("/api/schedules/hc", headers=bearer()).get_json()["audit"] == entries

    page = client.get("/schedules/hc").get_data(as_text=True)
    section = page[page.index("Recent actions") :]
    for shown in ("delete", "run now", "resume", "pause", "dashboard", "cli", job_id, str(escape(XSS))):
        assert shown in section, shown
    assert XSS not in page and "<script>" not in page


def test_logins_logouts_and_refused_logins_are_recorded_with_the_name_escaped(client: FlaskClient) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    refused = client.post("/login", data={"username": XSS, "password": "guess", "csrf_token": token})
    assert refused.status_code == 401
    token = log_in(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/rq/0/view/jobs", headers=basic(password="wrong")).status_code == 401

    got = [(e["source"], e["action"], e["actor"], e["outcome"]) for e in trail(client)]
    assert got == [
        ("dashboard", "login_failed", USER, "refused"),
        ("page", "logout", USER, "ok"),
        ("page", "login", USER, "ok"),
        ("page", "login_failed", XSS, "refused"),
    ]
    # Logins belong to no schedule: the schedule's page shows none of them.
    assert trail(client, "?schedule=hc") == []
    page = client.get("/schedules/hc", headers=basic()).get_data(as_text=True)
    assert "No operator action recorded." in page and XSS not in page


def test_refused_actions_are_recorded_as_refused_with_why(client: FlaskClient, ops_app: Flask) -> None:
    assert client.post("/api/schedules/hc/pause", json={"reason": " "}, headers=bearer()).status_code == 400
    assert client.post("/api/failed/cronwork-hc-1/requeue", headers=bearer()).status_code == 404
    out = ops_app.test_cli_runner().invoke(args=["schedules", "run", "backfill"])
    assert out.exit_code != 0
    token = log_in(client)
    refused_csrf = client.post("/rq/job/cronwork-hc-1/delete")  # no CSRF token: never reached the view
    assert refused_csrf.status_code == 403
    assert client.post("/rq/job/cronwork-hc-1/requeue", headers={"X-CSRFToken": token}).status_code == 200

    entries = [e for e in trail(client) if e["action"] != "login"]
    got = [(e["source"], e["action"], e["schedule"], e["outcome"], e["detail"]) for e in entries]
    assert got == [
        ("dashboard", "requeue", "hc", "refused", "no such job: cronwork-hc-1"),
        ("cli", "run_now", "backfill", "refused", f"schedule 'backfill' is declared but {UNREGISTERED}"),
        ("api", "requeue", "hc", "refused", "no job 'cronwork-hc-1'"),
        ("api", "pause", "hc", "refused", "a reason is required (a short text)"),
    ]


def test_the_page_and_the_api_survive_garbage_in_the_trail(client: FlaskClient, redis: Redis) -> None:
    redis.lpush(KEYS.audit_of("hc"), b"\x80\x04pickled", XSS.encode())
    entries = trail(client, "?schedule=hc")
    assert [e["reason"] for e in entries] == ["not JSON", "not JSON"] and entries[0]["excerpt"] == XSS
    page = client.get("/schedules/hc", headers=basic()).get_data(as_text=True)
    assert page.count("undecodable entry: not JSON") == 2 and XSS not in page


def test_the_api_bounds_its_limit(client: FlaskClient) -> None:
    assert client.get("/api/audit?limit=0", headers=bearer()).status_code == 400
    assert client.get("/api/audit?limit=x", headers=bearer()).status_code == 400
    assert client.get("/api/audit").status_code == 401
    assert trail(client, "?limit=10000") == []


def test_login_password_is_never_recorded(client: FlaskClient, redis: Redis) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": USER, "password": PASSWORD + "x", "csrf_token": token})
    assert PASSWORD.encode() not in b"".join(redis.lrange(KEYS.audit, 0, -1))


def test_under_gunicorn_each_info_line_of_an_action_reaches_the_console_once(
    processes: Processes, schedule_file: Path
) -> None:
    web, base = processes.start_web(**ops_env(SCHEDULE_FILE=str(schedule_file)))

    pause = urllib.request.Request(
        f"{base}/api/schedules/hc/pause",
        data=json.dumps({"reason": "disk full"}).encode(),
        headers={**bearer(), "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(pause, timeout=10) as response:
        assert response.status == 200
    # gunicorn writes the access line once the response is sent: every line of the request is out.
    wait_until(lambda: '"POST /api/schedules/hc/pause' in processes.output(web), timeout=10)
    lines = processes.output(web).splitlines()
    audit_lines = [line for line in lines if " INFO cronwork.audit " in line]
    assert len(audit_lines) == 1, lines
    assert "audit actor='token' action=pause schedule='hc'" in audit_lines[0]
    assert "remote=127.0.0.1 outcome=ok detail='disk full'" in audit_lines[0]
    assert len([line for line in lines if " INFO app.services.schedules paused schedule=hc" in line]) == 1


SCRIPT = """
import logging
from app import create_app
create_app(); create_app()
logging.getLogger("cronwork.audit").info("one audit line")
logging.getLogger("app.ops.pages").info("one app line")
logging.getLogger("sqlalchemy.pool").info("a library info")
"""


def test_a_process_without_logging_set_up_gets_our_info_lines_once(process_env: dict[str, str]) -> None:
    """What `flask run` (the dev server) and a gunicorn worker get from create_app()."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=PROJECT_ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO cronwork.audit one audit line",
        "INFO app.ops.pages one app line",
    ], lines
