"""rq:worker:<name>: capped TTL, re-registered when it expired, written only when that changes it."""

from __future__ import annotations

import pytest
from flask import Flask
from redis import Redis
from rq.worker import WorkerStatus

from jobs.worker import WORKER_KEY_TTL, CronworkWorker, build_worker, parentdeath
from jobs.worker.defaults import HEARTBEAT_MIN_GAP


class Clock:
    """time.monotonic for parentdeath, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(parentdeath.time, "monotonic", clock)
    return clock


@pytest.fixture
def worker(app: Flask) -> CronworkWorker:
    worker = build_worker(app, ["default"], name="keyed")
    worker.register_birth()
    return worker


def last_heartbeat(redis: Redis) -> bytes | None:
    value = redis.hget("rq:worker:keyed", "last_heartbeat")
    return value if isinstance(value, bytes) else None


def test_heartbeats_closer_than_the_gap_are_skipped(
    redis: Redis, worker: CronworkWorker, clock: Clock
) -> None:
    worker.heartbeat()
    redis.hset("rq:worker:keyed", "last_heartbeat", "marker")
    redis.expire("rq:worker:keyed", 5)
    clock.now += HEARTBEAT_MIN_GAP / 2
    worker.heartbeat()  # skipped: the key lives on the previous one's TTL
    assert last_heartbeat(redis) == b"marker" and redis.ttl("rq:worker:keyed") <= 5
    clock.now += HEARTBEAT_MIN_GAP
    worker.heartbeat()
    assert last_heartbeat(redis) != b"marker" and 5 < redis.ttl("rq:worker:keyed") <= WORKER_KEY_TTL


def test_a_heartbeat_on_a_pipeline_is_never_skipped(
    redis: Redis, worker: CronworkWorker, clock: Clock
) -> None:
    worker.heartbeat()
    redis.hset("rq:worker:keyed", "last_heartbeat", "marker")
    with redis.pipeline() as pipe:
        worker.heartbeat(pipeline=pipe)
        pipe.execute()
    assert last_heartbeat(redis) != b"marker"


def test_an_expired_key_is_registered_again_with_the_state(
    redis: Redis, worker: CronworkWorker, clock: Clock
) -> None:
    worker.set_state(WorkerStatus.BUSY)
    redis.delete("rq:worker:keyed")  # an outage longer than the key's TTL
    redis.srem(worker.redis_workers_keys, worker.key)
    worker.heartbeat()
    stored = redis.hgetall("rq:worker:keyed")
    assert stored[b"state"] == b"busy" and stored[b"pid"] == str(worker.pid).encode()
    assert redis.sismember(worker.redis_workers_keys, worker.key)
    assert 0 < redis.ttl("rq:worker:keyed") <= WORKER_KEY_TTL


def test_the_state_is_written_only_when_it_changes(redis: Redis, worker: CronworkWorker) -> None:
    worker.set_state(WorkerStatus.IDLE)
    redis.hset("rq:worker:keyed", "state", "marker")
    worker.set_state(WorkerStatus.IDLE)  # what this process last wrote: skipped
    assert redis.hget("rq:worker:keyed", "state") == b"marker"
    worker.set_state(WorkerStatus.BUSY)
    assert redis.hget("rq:worker:keyed", "state") == b"busy"
    with redis.pipeline() as pipe:  # in a transaction (rq's prepare_execution): always written
        worker.set_state(WorkerStatus.BUSY, pipeline=pipe)
        pipe.hset("rq:worker:keyed", "state", "marker")
        worker.set_state(WorkerStatus.BUSY, pipeline=pipe)
        pipe.execute()
    assert redis.hget("rq:worker:keyed", "state") == b"busy"
