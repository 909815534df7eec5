"""/metrics parses with prometheus-client's parser and carries the expected series."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Worker
from rq.registry import FailedJobRegistry

from app import create_app
from app.ops.metrics import WINDOW
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.ledger import Ledger
from cronwork.runs import RunState
from cronwork.serializer import json_queue
from tests.app.conftest import KEYS, seed_ledger

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Series:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    series: Series = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(f"cronwork_{name}", frozenset(labels.items()))]


@pytest.mark.usefixtures("registered")
def test_metrics_carry_schedule_queue_and_process_series(client: FlaskClient, redis: Redis) -> None:
    ticks = seed_ledger(redis, "hc", ["succeeded", "missed", "failed", "timed_out", "missed", "succeeded"])
    manual_tick = ticks[-1] + 60
    Ledger(redis, KEYS).put(
        "hc", manual_tick, {"state": "enqueued", "trigger": "manual", "lag": 0, "job_id": "x"}
    )
    redis.set(KEYS.failure_streak("nightly"), 3)
    redis.hset(KEYS.paused, "nightly", '{"reason": "r", "since": "2030-01-01T00:00:00+00:00"}')
    redis.hset(KEYS.scheduler_heartbeat, "scheduler-1", time.time() - 5)
    queue = json_queue("default", redis)
    queue.enqueue("jobs.diagnostics.count_users")
    failed_job = queue.enqueue("jobs.diagnostics.fail")
    queue.remove(failed_job)
    FailedJobRegistry(queue=queue).add(failed_job, exc_string="RuntimeError: x")
    Worker([queue], connection=redis, name="metrics-worker").register_birth()

    series = scrape(client)

    assert value(series, "redis_up") == 1
    assert value(series, "schedule_lag_seconds", schedule="hc") == pytest.approx(0.02)  # manual runs left out
    assert value(series, "schedule_start_latency_seconds", schedule="hc") == pytest.approx(0.5)
    assert value(series, "schedule_last_duration_seconds", schedule="hc") == 1.5
    newest_success = datetime.fromtimestamp(ticks[-1] + 2, UTC).timestamp()
    assert value(series, "schedule_last_success_timestamp_seconds", schedule="hc") == newest_success
    # Counted over the newest WINDOW runs only, whatever the ledger keeps (issue 11).
    newest = ["enqueued", "succeeded", "missed", "timed_out", "failed", "missed", "succeeded"][:WINDOW]
    for state in RunState:
        assert value(series, "schedule_runs", schedule="hc", state=state) == newest.count(state), state
    assert value(series, "schedule_missed_ticks", schedule="hc") == newest.count("missed")
    assert value(series, "schedule_consecutive_failures", schedule="nightly") == 3
    assert value(series, "schedule_consecutive_failures", schedule="hc") == 0
    assert value(series, "schedule_paused", schedule="nightly") == 1
    assert value(series, "schedule_paused", schedule="hc") == 0
    next_tick = redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("hc"))
    assert value(series, "schedule_next_fire_timestamp_seconds", schedule="hc") == next_tick
    assert (
        "cronwork_schedule_last_success_timestamp_seconds",
        frozenset({("schedule", "nightly")}),
    ) not in series
    assert "backfill" not in {
        dict(labels).get("schedule") for _, labels in series
    }  # disabled: not registered

    assert value(series, "queue_length", queue="default") == 1
    assert value(series, "queue_failed_jobs", queue="default") == 1
    assert value(series, "queue_started_jobs", queue="default") == 0
    assert value(series, "scheduler_heartbeat_age_seconds") == pytest.approx(5, abs=2)
    assert value(series, "workers") == 1
    assert value(series, "queue_workers", queue="default") == 1


def test_metrics_without_redis_still_answer(database_url: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "SQLALCHEMY_DATABASE_URI": database_url})
    series = scrape(app.test_client())
    assert series == {("cronwork_redis_up", frozenset()): 0}


def test_each_app_has_its_own_registry(ops_app: Flask, client: FlaskClient) -> None:
    other = create_app({"REDIS_URL": ops_app.config["REDIS_URL"], "SECRET_KEY": "x"})
    assert other.extensions["cronwork_metrics"] is not ops_app.extensions["cronwork_metrics"]
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("cronwork_")]
    assert value(scrape(client), "redis_up") == 1
