"""/metrics parses with prometheus-client's parser and carries the expected series."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Worker
from rq.registry import FailedJobRegistry

from app import create_app
from app.ops.metrics import COUNTED, CronworkCollector
from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.ledger import Ledger
from cronwork.runs import Guard, RunState, RunWriter
from cronwork.serializer import json_queue
from scheduler_boot.scheduler import CronworkScheduler
from tests.app.conftest import KEYS

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Series:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def parse(text: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def collect(redis: Redis, clock: Callable[[], float]) -> Series:
    """The collector's series at a given clock, without the web app."""
    registry = CollectorRegistry()
    registry.register(CronworkCollector(lambda: redis, KEYS, clock=clock))
    return parse(generate_latest(registry).decode())


def value(series: Series, name: str, **labels: str) -> float:
    return series[(f"cronwork_{name}", frozenset(labels.items()))]


def play_runs(redis: Redis, name: str) -> dict[str, float]:
    """Runs of `name` (every 30 min, misfire = skip) through the real transitions: a tick found
    a minute late (missed), a tick pushed by the dispatch script, started 0.5 s after it and
    succeeded in 1.5 s, a run that failed, and a manual run (left out of lag and start
    latency). Returns the expected figures."""
    writer, ledger = RunWriter(redis, KEYS), Ledger(redis, KEYS)
    seconds, _ = redis.time()
    # hc fires every 30 minutes on the half hours: one inside the 60 s played here would be a
    # second missed tick (a 1-in-30 flake). Play it just before the last half hour instead.
    half_hour = seconds - seconds % 1800
    if seconds - half_hour <= 61:
        seconds = half_hour - 1
    for late in (60, 2):  # missed, then run
        redis.zadd(RQ_SCHEDULER_SET, {KEYS.template_id(name): float(seconds - late)}, xx=True)
        CronworkScheduler(redis, KEYS, clock=lambda: float(seconds)).enqueue_jobs()
    tick = seconds - 2
    [record] = [r for r in ledger.history(name, 5) if r["tick"] == tick]
    at = datetime.fromtimestamp(tick, UTC)
    started, ended = at + timedelta(seconds=0.5), at + timedelta(seconds=2)
    writer.started(name, tick, "t1", record["job_id"], "w", started, at)
    writer.finished(name, tick, RunState.SUCCEEDED, Guard.TOKEN, "t1", {"ended_at": ended.isoformat(), "duration": 1.5})
    failed = tick - 10
    writer.started(name, failed, "t2", "j2", "w", started - timedelta(seconds=10), at)
    writer.finished(name, failed, RunState.FAILED, Guard.TOKEN, "t2", {"ended_at": ended.isoformat(), "duration": 0.25})
    manual = tick + 1
    ledger.put(name, manual, {"state": "enqueued", "trigger": "manual", "lag": 0, "job_id": "x"})
    writer.started(name, manual, "t3", "x", "w", started + timedelta(seconds=9), at)
    return {"lag": float(record["lag"]), "success": ended.timestamp()}


@pytest.mark.usefixtures("registered")
def test_metrics_carry_schedule_queue_and_process_series(client: FlaskClient, redis: Redis) -> None:
    expected = play_runs(redis, "hc")
    redis.set(KEYS.failure_streak("nightly"), 3)
    redis.hset(KEYS.paused, "nightly", '{"reason": "r", "since": "2030-01-01T00:00:00+00:00"}')
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time() - 5, clock_offset=-2.0)
    store.beat_scheduler(redis, KEYS, "gone", time.time() - 300, clock_offset=9.0)  # long dead: not shown
    queue = json_queue("default", redis)
    queue.enqueue("jobs.diagnostics.count_users")
    failed_job = queue.enqueue("jobs.diagnostics.fail")
    queue.remove(failed_job)
    FailedJobRegistry(queue=queue).add(failed_job, exc_string="RuntimeError: x")
    Worker([queue], connection=redis, name="metrics-worker").register_birth()

    series = scrape(client)

    assert value(series, "redis_up") == 1
    assert value(series, "schedule_lag_seconds", schedule="hc") == pytest.approx(expected["lag"])
    assert value(series, "schedule_start_latency_seconds", schedule="hc") == pytest.approx(0.5)
    assert value(series, "schedule_last_duration_seconds", schedule="hc") == 0.25  # the failed one ended last
    assert value(series, "schedule_last_success_timestamp_seconds", schedule="hc") == expected["success"]
    counted = {"succeeded": 1, "failed": 1, "missed": 1}
    for state in COUNTED:
        assert value(series, "schedule_runs_total", schedule="hc", state=state) == counted.get(state, 0), state
    assert value(series, "schedule_consecutive_failures", schedule="nightly") == 3
    assert value(series, "schedule_consecutive_failures", schedule="hc") == 1  # the failed run ended last
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

    assert value(series, "queue_length", queue="default") == 2  # count_users and the pushed hc run
    assert value(series, "queue_failed_jobs", queue="default") == 1
    assert value(series, "queue_started_jobs", queue="default") == 0
    assert value(series, "scheduler_heartbeat_age_seconds") == pytest.approx(5, abs=2)
    assert value(series, "scheduler_clock_offset_seconds", scheduler="scheduler-1") == -2.0
    assert ("cronwork_scheduler_clock_offset_seconds", frozenset({("scheduler", "gone")})) not in series
    assert value(series, "scheduler_up") == 1
    assert value(series, "workers") == 1
    assert value(series, "queue_workers", queue="default") == 1
    assert value(series, "queue_schedules", queue="default") == 2  # hc and nightly
    assert 0 < value(series, "queue_oldest_job_age_seconds", queue="default") < 60


@pytest.mark.usefixtures("registered")
def test_queues_of_schedules_and_workers_are_shown_with_zeros(client: FlaskClient, redis: Redis) -> None:
    """A queue a schedule uses but no worker serves (what CronworkNoWorkerForQueue looks for),
    and one a worker serves but no schedule uses, both carry the zero."""
    Worker([json_queue("reports", redis)], connection=redis, name="reports-worker").register_birth()

    series = scrape(client)

    assert value(series, "queue_workers", queue="default") == 0
    assert value(series, "queue_schedules", queue="default") == 2
    assert value(series, "queue_workers", queue="reports") == 1
    assert value(series, "queue_schedules", queue="reports") == 0
    for queue in ("default", "reports"):  # nothing waits in either
        assert value(series, "queue_length", queue=queue) == 0
        assert value(series, "queue_oldest_job_age_seconds", queue=queue) == 0


def test_oldest_job_age_is_the_wait_of_the_queue_head(redis: Redis) -> None:
    queue = json_queue("default", redis)
    first = queue.enqueue("jobs.diagnostics.count_users")
    queue.enqueue("jobs.diagnostics.count_users")
    assert first.enqueued_at is not None
    enqueued = first.enqueued_at.timestamp()
    gone = json_queue("ghost", redis).enqueue("jobs.diagnostics.count_users")
    redis.delete(gone.key)  # an id left in the queue whose job is gone: no wait to show

    series = collect(redis, clock=lambda: enqueued + 42.5)

    assert value(series, "queue_oldest_job_age_seconds", queue="default") == pytest.approx(42.5)
    assert value(series, "queue_length", queue="default") == 2
    assert value(series, "queue_oldest_job_age_seconds", queue="ghost") == 0


def test_an_unreadable_job_at_a_queue_head_costs_the_figure_not_the_scrape(redis: Redis) -> None:
    job = json_queue("default", redis).enqueue("jobs.diagnostics.count_users")
    redis.hset(job.key, "enqueued_at", "yesterday")  # written by hand

    series = collect(redis, clock=time.time)

    assert value(series, "redis_up") == 1
    assert value(series, "queue_length", queue="default") == 1
    assert value(series, "queue_oldest_job_age_seconds", queue="default") == 0


@pytest.mark.parametrize(
    ("beat_age", "up"),
    [(None, 0.0), (5.0, 1.0), (store.SCHEDULER_HEARTBEAT_MAX_AGE + 5, 0.0)],
    ids=["never-beat", "fresh", "stale"],
)
def test_scheduler_up_follows_the_healthz_limit(redis: Redis, beat_age: float | None, up: float) -> None:
    now = time.time()
    if beat_age is not None:
        store.beat_scheduler(redis, KEYS, "scheduler-1", now - beat_age)

    series = collect(redis, clock=lambda: now)

    assert value(series, "scheduler_up") == up
    if beat_age is None:
        assert ("cronwork_scheduler_heartbeat_age_seconds", frozenset()) not in series
    else:
        assert value(series, "scheduler_heartbeat_age_seconds") == pytest.approx(beat_age)


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
