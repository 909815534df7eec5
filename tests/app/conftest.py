"""Fixtures for the ops surface: an app with admin secrets, a schedule file, registered schedules."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import event

from app.extensions import db
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.loader import load_schedule
from scheduler_boot.sync import apply_plan

TOKEN = "test-admin-token-4f1c9e"
USER = "ops-admin"
PASSWORD = "correct horse battery staple"
KEYS = Keys()

SCHEDULE_TOML = """
[defaults]
timezone = "Asia/Shanghai"
timeout = "20s"
misfire = "skip"

[schedules.hc]
func = "jobs.system.health_check"
every = "30m"
description = "Prove the pipeline end to end"

[schedules.nightly]
func = "jobs.diagnostics.count_users"
cron = "0 2 * * *"

[schedules.backfill]
func = "jobs.diagnostics.count_users"
at = "2031-12-25T10:00:00"
enabled = false
"""


@pytest.fixture
def schedule_file(tmp_path: Path) -> Path:
    """A schedule file with two enabled schedules (hc, nightly) and a disabled one (backfill)."""
    path = tmp_path / "schedule.toml"
    path.write_text(SCHEDULE_TOML)
    return path


@pytest.fixture
def ops_app(app: Flask, schedule_file: Path) -> Flask:
    """The test app with the ops secrets configured and the test schedule file."""
    app.config.update(
        ADMIN_TOKEN=TOKEN, ADMIN_USER=USER, ADMIN_PASSWORD=PASSWORD, SCHEDULE_FILE=str(schedule_file)
    )
    return app


@pytest.fixture
def registered(ops_app: Flask, redis: Redis, schedule_file: Path) -> list[str]:
    """Sync the test schedule file into Redis, as `python -m scheduler_boot --sync-only` would."""
    now = datetime.now(UTC)
    plan = apply_plan(redis, load_schedule(schedule_file).specs, KEYS, now)
    return plan.added


@pytest.fixture
def client(ops_app: Flask) -> Iterator[FlaskClient]:
    with ops_app.test_client() as client:
        yield client


def ops_env(**more: str) -> dict[str, str]:
    """The ops credentials of these tests as environment for a real web process, plus `more`."""
    return {"SECRET_KEY": "ops-test-secret", "ADMIN_TOKEN": TOKEN, "ADMIN_USER": USER, "ADMIN_PASSWORD": PASSWORD, **more}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def csrf_from(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client: FlaskClient) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return csrf_from(client.get("/").get_data(as_text=True))


def seed_ledger(redis: Redis, name: str, states: list[str], every: int = 1800) -> list[int]:
    """Ledger records for past ticks, oldest first, one per state; returns the ticks."""
    ledger = Ledger(redis, KEYS)
    end = int(datetime.now(UTC).timestamp()) // every * every
    ticks = [end - every * (len(states) - i) for i in range(len(states))]
    for tick, state in zip(ticks, states, strict=True):
        at = datetime.fromtimestamp(tick, UTC)
        fields: dict[str, object] = {"state": state, "job_id": KEYS.run_id(name, tick)}
        if state not in ("missed", "paused"):
            fields.update(enqueued_at=(at + timedelta(seconds=0.02)).isoformat(), lag=0.02)
        if state in ("succeeded", "failed", "timed_out"):
            fields.update(
                started_at=(at + timedelta(seconds=0.5)).isoformat(),
                ended_at=(at + timedelta(seconds=2)).isoformat(),
                duration=1.5,
                attempt=1,
            )
        if state == "succeeded":
            fields["result"] = '{"ok": true}'
        if state in ("failed", "timed_out"):
            fields.update(error_type="RuntimeError", error=f"boom at {tick}")
        ledger.put(name, tick, fields)
    return ticks


@pytest.fixture
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement sent to the database while the test runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)
