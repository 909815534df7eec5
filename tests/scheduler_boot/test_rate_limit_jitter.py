"""rate_limit and jitter (issue 14) through the real sync, scheduler passes and dispatch script."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from app.services.schedules import ScheduleService
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.ledger import Ledger
from cronwork.ratelimit import RateLimit
from cronwork.serializer import json_queue
from cronwork.spec import ScheduleError
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan
from tests.conftest import wait_until
from tests.scheduler_boot.helpers import schedule_from
from tests.scheduler_boot.test_scheduler import Clock

KEYS = Keys()
T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
# Synced after T0's run was due (its jitter is under 30 s): the first tick ahead is T0 + 1 min.
# A sync at T0 itself keeps T0 ahead (test_a_sync_inside_a_ticks_jitter_keeps_it_ahead…).
SYNCED = T0 + timedelta(seconds=45)

RATE_LIMITED = """
[schedules.often]
func = "jobs.system.health_check"
every = "1s"
overlap = "allow"
timeout = "1s"
rate_limit = "2/1m"
"""

JITTERED = """
[schedules.jittered]
func = "jobs.system.health_check"
cron = "* * * * *"
timeout = "30s"
jitter = "30s"
"""


def test_ticks_beyond_the_rate_limit_are_recorded_rate_limited_not_enqueued(redis: Redis) -> None:
    apply_plan(redis, schedule_from(RATE_LIMITED, T0).specs, KEYS, T0)
    clock = Clock(T0 + timedelta(seconds=5, milliseconds=10))  # ticks 1..5 due in one pass

    pushed = CronworkScheduler(redis, KEYS, clock=clock).enqueue_jobs()

    assert len(pushed) == 2 and json_queue("default", redis).count == 2
    records = sorted(Ledger(redis, KEYS).history("often"), key=lambda r: r["tick"])
    assert [r["state"] for r in records] == ["enqueued"] * 2 + ["rate_limited"] * 3
    limited = records[2:]
    assert all(r["trigger"] == "schedule" and "enqueued_at" not in r for r in limited)
    # The next run is allowed when the oldest admitted run leaves the 1-minute window.
    admitted_at = datetime.fromisoformat(records[0]["enqueued_at"]).timestamp()
    assert {round(r["retry_at"] - admitted_at, 1) for r in limited} == {60.0}
    assert redis.hget(KEYS.run_stats, "often:runs:rate_limited") == b"3"
    assert redis.zcard(KEYS.schedule_rate("often")) == 2


def test_the_window_slides_a_run_is_admitted_again_once_the_oldest_left(redis: Redis) -> None:
    apply_plan(redis, schedule_from(RATE_LIMITED.replace("2/1m", "1/1s"), T0).specs, KEYS, T0)
    clock = Clock(T0 + timedelta(seconds=1, milliseconds=10))
    sched = CronworkScheduler(redis, KEYS, clock=clock)
    assert len(sched.enqueue_jobs()) == 1
    admitted = time.monotonic()
    clock.now += timedelta(seconds=1)
    assert sched.enqueue_jobs() == []  # within 1 s of Redis's clock: refused

    def next_tick_admitted() -> bool:
        clock.now += timedelta(seconds=1)
        return bool(sched.enqueue_jobs())

    wait_until(next_tick_admitted, timeout=5, interval=0.2)
    assert time.monotonic() - admitted >= 0.9  # not before the admitted run left the window


def test_rate_limit_is_parsed_and_refused_with_one_line_each() -> None:
    assert RateLimit.parse("5/1m") == RateLimit(5, 60)
    assert RateLimit.parse(" 10 / 1h30m ").text == "10/1h30m"
    for bad in ("5", "0/1m", "5/0s", "x/1m", "5/1y", "5/8d"):
        with pytest.raises(ValueError, match="rate limit"):
            RateLimit.parse(bad)
    with pytest.raises(ScheduleError) as caught:
        schedule_from(RATE_LIMITED.replace('"2/1m"', '"2 per minute"'), T0)
    assert caught.value.errors == [
        "schedule.toml: schedules.often.rate_limit: invalid rate limit '2 per minute': "
        'expected "<runs>/<window>", like "5/1m"'
    ]


def test_jitter_delays_the_run_and_the_ledger_shows_tick_jitter_and_lag(redis: Redis) -> None:
    spec = schedule_from(JITTERED, T0).specs["jittered"]
    apply_plan(redis, {"jittered": spec}, KEYS, SYNCED)
    tick = T0 + timedelta(minutes=1)
    jitter = spec.jitter_of(int(tick.timestamp()))
    assert 0 < jitter < 30
    # The template waits for the tick plus its jitter, not the tick.
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("jittered")) == tick.timestamp() + jitter
    # Operators are shown the ticks (the ledger's `tick`), the jitter beside them.
    shown = ScheduleService(redis, KEYS).next_fires("jittered", 2)
    assert shown == [tick, tick + timedelta(minutes=1)]

    clock = Clock(tick + timedelta(seconds=jitter - 0.5))
    sched = CronworkScheduler(redis, KEYS, clock=clock)
    assert sched.enqueue_jobs() == []  # the tick has passed, its jittered instant has not
    clock.now = tick + timedelta(seconds=jitter + 0.01)
    assert sched.enqueue_jobs() == [KEYS.run_id("jittered", int(tick.timestamp()))]

    [record] = Ledger(redis, KEYS).history("jittered")
    assert record["tick"] == int(tick.timestamp())
    assert record["jitter"] == pytest.approx(jitter)
    pushed = datetime.fromisoformat(record["enqueued_at"]).timestamp()
    assert record["lag"] == pytest.approx(pushed - tick.timestamp() - jitter, abs=1e-5)
    # The next tick waits for its own jitter.
    following = tick + timedelta(minutes=1)
    next_jitter = spec.jitter_of(int(following.timestamp()))
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("jittered")) == following.timestamp() + next_jitter


def test_two_replicas_agree_on_every_jitter_and_push_each_tick_once(redis: Redis, redis_url: str) -> None:
    spec = schedule_from(JITTERED, T0).specs["jittered"]
    apply_plan(redis, {"jittered": spec}, KEYS, SYNCED)
    clock = Clock(T0)
    replicas = [CronworkScheduler(Redis.from_url(redis_url), KEYS, clock=clock) for _ in range(2)]
    pushed: list[str] = []
    for minute in range(1, 6):
        tick = T0 + timedelta(minutes=minute)
        clock.now = tick + timedelta(seconds=spec.jitter_of(int(tick.timestamp())) + 0.01)
        plans = [replica.plan(clock()) for replica in replicas]  # both plan the same pass
        assert [len(p.templates) for p in plans] == [1, 1]
        for replica, plan in zip(replicas, plans, strict=True):
            pushed += replica.fire(plan)
    assert len(pushed) == 5 == len(set(pushed))
    records = Ledger(redis, KEYS).history("jittered")
    assert {r["tick"]: r["jitter"] for r in records} == {
        r["tick"]: pytest.approx(spec.jitter_of(r["tick"])) for r in records
    }
    # Another process (another replica's interpreter, another hash seed) derives the same jitters.
    code = (
        "from datetime import datetime, UTC; from tests.scheduler_boot.helpers import schedule_from;"
        f"s = schedule_from({JITTERED!r}, datetime.fromtimestamp({T0.timestamp()}, UTC)).specs['jittered'];"
        f"print([s.jitter_of(t) for t in {sorted(r['tick'] for r in records)}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([spec.jitter_of(t) for t in sorted(r["tick"] for r in records)])


def test_jitter_must_be_shorter_than_the_gap_between_runs() -> None:
    with pytest.raises(ScheduleError) as caught:
        schedule_from(JITTERED.replace('jitter = "30s"', 'jitter = "1m"'), T0)
    assert caught.value.errors == [
        "schedule.toml: schedules.jittered.jitter: 60s must be shorter than the 60s between runs"
    ]


def test_a_changed_jitter_retimes_the_template_to_its_new_due_instant(redis: Redis) -> None:
    spec = schedule_from(JITTERED, T0).specs["jittered"]
    apply_plan(redis, {"jittered": spec}, KEYS, SYNCED)
    changed = schedule_from(JITTERED.replace('"30s"', '"10s"'), T0).specs["jittered"]
    plan = apply_plan(redis, {"jittered": changed}, KEYS, SYNCED)
    assert plan.retimed == ["jittered"]
    tick = T0 + timedelta(minutes=1)
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("jittered")) == changed.score_of(tick)


def test_garbage_in_the_rate_window_resets_it_and_the_batch_still_dispatches(redis: Redis) -> None:
    text = RATE_LIMITED + RATE_LIMITED.replace("often", "other").replace('rate_limit = "2/1m"\n', "")
    apply_plan(redis, schedule_from(text, T0).specs, KEYS, T0)
    redis.set(KEYS.schedule_rate("often"), "<script>not a sorted set</script>")
    clock = Clock(T0 + timedelta(seconds=1, milliseconds=10))
    pushed = CronworkScheduler(redis, KEYS, clock=clock).enqueue_jobs()
    assert sorted(pushed) == sorted(KEYS.run_id(name, int(T0.timestamp()) + 1) for name in ("often", "other"))
    assert redis.type(KEYS.schedule_rate("often")) == b"zset"


ONE_OFF = """
[schedules.once]
func = "jobs.system.health_check"
timezone = "UTC"
at = "2026-11-22T04:10:00"
jitter = "10m"
"""


def test_a_sync_inside_a_ticks_jitter_keeps_it_ahead_one_off_or_recurring(redis: Redis) -> None:
    once = schedule_from(ONE_OFF, T0).specs["once"]
    at = datetime(2026, 11, 22, 4, 10, tzinfo=UTC)
    due = once.due_at(at)
    assert due > at + timedelta(seconds=1)  # this name and tick draw a jitter of a few minutes
    inside = at + (due - at) / 2  # a restart after `at`, before the run is due
    assert not once.is_expired(inside) and once.is_expired(due + timedelta(seconds=1))
    plan = apply_plan(redis, {"once": once}, KEYS, inside)
    assert plan.added == ["once"] and plan.expired == {}
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("once")) == due.timestamp()

    recurring = schedule_from(JITTERED, T0).specs["jittered"]
    tick = T0 + timedelta(minutes=1)
    inside = tick + timedelta(seconds=recurring.jitter_of(int(tick.timestamp())) / 2)
    apply_plan(redis, {"jittered": recurring}, KEYS, inside)
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("jittered")) == recurring.score_of(tick)


def test_jitter_is_at_most_a_day() -> None:
    with pytest.raises(ScheduleError) as caught:
        schedule_from(ONE_OFF.replace('"10m"', '"99999999d"'), T0)
    assert caught.value.errors == [
        "schedule.toml: schedules.once.jitter: 8639999913600s is longer than the most allowed, 86400s (1d)"
    ]
