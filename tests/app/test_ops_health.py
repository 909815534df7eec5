"""/healthz, the /health page and the container probe: live workers per queue, one scheduler
staleness limit, a pipeline that is pending (healthy) on a fresh start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker
from rq.utils import utcformat

from app import probe
from app.services.heartbeat import write_heartbeat
from cronwork import store
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.serializer import json_queue
from cronwork.settings import PROJECT_ROOT
from tests.app.conftest import log_in

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


# -- health from the first second, and the page ----------------------------------------------


def live_worker(redis: Redis, born_ago: float = 0.0, beat_ago: float = 0.0) -> Worker:
    """A registered worker on `default`, born and last beating that many seconds ago."""
    worker = Worker([json_queue("default", redis)], connection=redis)
    worker.register_birth()
    now = datetime.now(UTC)
    redis.hset(
        worker.key,
        mapping={
            "birth": utcformat(now - timedelta(seconds=born_ago)),
            "last_heartbeat": utcformat(now - timedelta(seconds=beat_ago)),
        },
    )
    return worker


def first_second(redis: Redis) -> None:
    """A fresh start: a scheduler loop beating, a worker up, no health_check run yet."""
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time())
    live_worker(redis)


@pytest.mark.usefixtures("registered")
def test_a_fresh_start_is_healthy_once_the_loop_beats_and_a_worker_lives(
    client: FlaskClient, redis: Redis
) -> None:
    assert client.get("/healthz").status_code == 503  # nothing runs yet
    first_second(redis)
    response = client.get("/healthz")
    assert response.status_code == 200, response.get_json()
    pipeline = response.get_json()["checks"]["health_check"]
    assert pipeline["ok"] is True and pipeline["pending"] is True and pipeline["age"] is None


@pytest.mark.usefixtures("registered")
def test_the_pipeline_fails_once_a_run_since_the_worker_came_up_is_too_old(
    client: FlaskClient, ops_app: Flask, redis: Redis
) -> None:
    max_age = float(ops_app.config["HEARTBEAT_MAX_AGE"])
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time())
    live_worker(redis, born_ago=max_age + 60)
    now = int(time.time())
    ledger = Ledger(redis, KEYS)
    ledger.put("hc", now - int(max_age) - 30, {"state": "missed"})  # the scheduler's fault: not counted
    assert client.get("/healthz").status_code == 200
    ledger.put("hc", now - int(max_age) - 10, {"state": "enqueued"})  # ran nowhere for too long
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["health_check"] == {"ok": False, "age": None, "max_age": max_age}


@pytest.mark.usefixtures("registered")
def test_a_fresh_beat_is_ok_and_a_run_before_the_worker_came_up_does_not_count(
    client: FlaskClient, ops_app: Flask, redis: Redis
) -> None:
    first_second(redis)  # the worker was born just now
    Ledger(redis, KEYS).put("hc", int(time.time()) - 3600, {"state": "enqueued"})  # before the restart
    assert client.get("/healthz").status_code == 200
    write_heartbeat("job-1", "test")
    pipeline = client.get("/healthz").get_json()["checks"]["health_check"]
    assert pipeline["ok"] is True and "pending" not in pipeline and pipeline["age"] < 5


def test_without_a_health_check_schedule_the_pipeline_fails(client: FlaskClient, redis: Redis) -> None:
    first_second(redis)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.get_json()["checks"]["health_check"]["ok"] is False


@pytest.mark.usefixtures("registered")
def test_a_worker_without_a_fresh_heartbeat_is_not_counted(client: FlaskClient, redis: Redis) -> None:
    """A worker that died without deregistering: rq still lists it until its key expires."""
    ghost = live_worker(redis, born_ago=3600, beat_ago=ghost_age(redis))
    assert ghost.key.encode() in redis.smembers("rq:workers")
    workers = client.get("/healthz").get_json()["checks"]["workers"]
    assert workers == {"ok": False, "count": 0, "queues": {}, "unserved_queues": ["default"]}


def ghost_age(redis: Redis) -> float:
    """Seconds past rq's worker TTL."""
    return Worker([], connection=redis).worker_ttl + 5


@pytest.mark.usefixtures("registered")
def test_the_health_page_shows_each_part_with_status_age_and_error(client: FlaskClient, redis: Redis) -> None:
    log_in(client)
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time() - 2)
    page = client.get("/health")
    assert page.status_code == 503  # no worker
    html = page.get_data(as_text=True)
    statuses = dict(re.findall(r'data-check="([a-z_]+)" data-status="([a-z]+)"', html))
    assert statuses == {
        "redis": "ok",
        "scheduler": "ok",
        "workers": "failing",
        "database": "ok",
        "health_check": "failing",
    }
    assert "no live worker on queue default" in html and "unhealthy" in html
    assert "pending" in html and "HEARTBEAT" not in html  # the rule, in words
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")

    live_worker(redis)
    html = client.get("/health").get_data(as_text=True)
    assert 'data-check="health_check" data-status="pending"' in html and "healthy" in html
    assert "<code>default</code>: 1" in html


def test_the_health_page_needs_a_login(client: FlaskClient) -> None:
    assert client.get("/health").status_code == 302
    assert client.get("/healthz").status_code == 503  # the probe's JSON stays open
