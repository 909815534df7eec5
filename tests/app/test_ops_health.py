"""/healthz and the container probe: live workers per queue, one scheduler staleness limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from app import probe
from cronwork import store
from cronwork.keys import Keys
from cronwork.serializer import json_queue
from cronwork.settings import PROJECT_ROOT

KEYS = Keys()


@pytest.mark.usefixtures("registered")
def test_workers_per_queue(client: FlaskClient, redis: Redis) -> None:
    workers = client.get("/healthz").get_json()["checks"]["workers"]
    assert workers == {"ok": False, "count": 0, "queues": {}, "unserved_queues": ["default"]}

    Worker(
        [json_queue("default", redis), json_queue("low", redis)], connection=redis
    ).register_birth()
    response = client.get("/healthz")
    assert response.get_json()["checks"]["workers"] == {
        "ok": True,
        "count": 1,
        "queues": {"default": 1, "low": 1},
    }
    assert response.status_code == 503  # no scheduler heartbeat, no health_check beat: still unhealthy


def test_no_schedule_needs_no_worker(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json()["checks"]["workers"]["ok"] is True


@pytest.mark.parametrize(("age", "alive"), [(5.0, True), (60.0, False)])
def test_scheduler_staleness_is_one_limit_for_healthz_and_the_probe(
    client: FlaskClient, redis: Redis, age: float, alive: bool
) -> None:
    """Issue 10: the container probe said stale after 30 s, /healthz after 120 s."""
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time() - age)
    scheduler = client.get("/healthz").get_json()["checks"]["scheduler"]
    assert scheduler["ok"] is alive and scheduler["max_age"] == store.SCHEDULER_HEARTBEAT_MAX_AGE
    assert scheduler["heartbeat_age"] == pytest.approx(age, abs=2)
    assert probe.scheduler_ok(redis, KEYS) is alive


def test_probe_needs_only_the_cronwork_settings(redis_url: str, redis: Redis, tmp_path: Path) -> None:
    """`python -m app.probe scheduler` on a container with no database settings at all."""
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "CRONWORK_INSTANCE_DIR": str(tmp_path)}

    def run() -> int:
        command = [sys.executable, "-m", "app.probe", "scheduler"]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, timeout=60).returncode

    assert run() == 1
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time())
    assert run() == 0
