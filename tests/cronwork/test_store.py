"""cronwork.store: the one reader/writer of definitions, pauses, fired one-offs, heartbeats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from redis import Redis

from cronwork import store
from cronwork.keys import Keys
from tests.scheduler_boot.helpers import schedule_from

KEYS = Keys("cw-store")
SCHEDULE = '[schedules.hourly]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nqueue = "low"\n'


@pytest.fixture
def conn(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


def test_definitions_round_trip_to_equal_specs(conn: Redis) -> None:
    spec = schedule_from(SCHEDULE, datetime(2026, 1, 1, tzinfo=UTC)).specs["hourly"]
    store.write_definition(conn, KEYS, spec)
    [(name, definition)] = store.definitions(conn, KEYS).items()
    assert name == "hourly" and definition.hash == spec.definition_hash()
    assert store.registered_specs(conn, KEYS) == {"hourly": spec}
    assert store.registered_queues(conn, KEYS) == {"low"} and store.is_registered(conn, KEYS, "hourly")
    store.unregister(conn, KEYS, "hourly")
    assert store.definitions(conn, KEYS) == {}


def test_pauses_and_a_hand_written_one(conn: Redis) -> None:
    store.set_pause(conn, KEYS, "a", store.Pause("maintenance", "2026-01-01T00:00:00+00:00"))
    conn.hset(KEYS.paused, "b", "by hand")  # an operator with redis-cli
    assert store.pauses(conn, KEYS) == {
        "a": store.Pause("maintenance", "2026-01-01T00:00:00+00:00"),
        "b": store.Pause("by hand", ""),
    }
    assert store.paused_names(conn, KEYS) == {"a", "b"} and store.is_paused(conn, KEYS, "a")
    assert store.clear_pause(conn, KEYS, "a") and not store.clear_pause(conn, KEYS, "a")


def test_fired_one_offs_and_scheduler_heartbeats(conn: Redis) -> None:
    store.record_fired_oneoff(conn, KEYS, "backfill", 1_700_000_000)
    assert store.fired_oneoffs(conn, KEYS) == {"backfill": 1_700_000_000}
    assert store.scheduler_heartbeat_age(conn, KEYS) is None and not store.scheduler_alive(None)
    now = time.time()
    store.beat_scheduler(conn, KEYS, "old", now - 100)
    store.beat_scheduler(conn, KEYS, "new", now - 3)
    age = store.scheduler_heartbeat_age(conn, KEYS, now)
    assert age == pytest.approx(3) and store.scheduler_alive(age)
    assert not store.scheduler_alive(store.SCHEDULER_HEARTBEAT_MAX_AGE + 1)
