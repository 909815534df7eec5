"""The scheduler loop against a real Redis, with a controlled clock."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq_scheduler import Scheduler

from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.ledger import Ledger
from cronwork.serializer import JSONJob, json_queue
from cronwork.store import fired_oneoffs
from jobs.system import health_check
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan, compute_plan
from tests.scheduler_boot.helpers import schedule_from

KEYS = Keys()
T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai

EVERY_MINUTE = """
[schedules.minutely]
func = "jobs.system.health_check"
cron = "* * * * *"
timeout = "30s"
retries = 2
retry_backoff = ["5s", "20s"]
"""


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()


def setup(redis: Redis, text: str = EVERY_MINUTE, start: datetime = T0) -> Clock:
    apply_plan(redis, schedule_from(text, start).specs, KEYS, start)
    return Clock(start)


def _redis_now(redis: Redis) -> float:
    seconds, micros = redis.time()
    return seconds + micros / 1e6


def scheduler(redis: Redis, clock: Clock) -> CronworkScheduler:
    return CronworkScheduler(redis, KEYS, clock=clock)


def test_due_tick_enqueues_one_fresh_run_and_reschedules_from_the_tick(redis: Redis) -> None:
    clock = setup(redis)
    clock.now = T0 + timedelta(minutes=1, milliseconds=30)
    assert scheduler(redis, clock).enqueue_jobs() == [
        f"cronwork-minutely-{int((T0 + timedelta(minutes=1)).timestamp())}"
    ]

    job_id = json_queue("default", redis).job_ids[0]
    job = JSONJob.fetch(job_id, connection=redis)
    tick = T0 + timedelta(minutes=1)
    assert job.meta["scheduled_for"] == tick.isoformat()
    assert job.kwargs == {"scheduled_for": tick.isoformat()}  # health_check accepts it
    assert job.timeout == 30
    assert job.retries_left == 2 and job.retry_intervals == [5, 20]
    # The template stays in rq-scheduler's set, moved to the next tick (not "now + 60 s").
    assert redis.zscore(RQ_SCHEDULER_SET, "cronwork-minutely") == (tick + timedelta(minutes=1)).timestamp()
    [record] = Ledger(redis, KEYS).history("minutely")
    assert record["state"] == "enqueued" and record["job_id"] == job_id
    # The push time is Redis's clock at the push (cronwork.dispatch), not the pass's clock.
    pushed_at = datetime.fromisoformat(record["enqueued_at"])
    assert abs(pushed_at.timestamp() - _redis_now(redis)) < 5
    assert abs(record["lag"] - (pushed_at - tick).total_seconds()) < 1e-5


def test_two_schedulers_on_the_same_tick_enqueue_once(redis: Redis, redis_url: str) -> None:
    clock = setup(redis)
    clock.now = T0 + timedelta(minutes=1, seconds=1)
    other = CronworkScheduler(Redis.from_url(redis_url), KEYS, clock=clock)
    first = scheduler(redis, clock).enqueue_jobs()
    # The second saw the template due before the first moved it: simulate by putting it back.
    redis.zadd(RQ_SCHEDULER_SET, {"cronwork-minutely": (T0 + timedelta(minutes=1)).timestamp()})
    second = other.enqueue_jobs()
    assert len(first) == 1 and second == []
    assert json_queue("default", redis).count == 1


def test_template_never_moves_backwards(redis: Redis) -> None:
    clock = setup(redis)
    clock.now = T0 + timedelta(minutes=3, seconds=1)
    s = scheduler(redis, clock)
    s.enqueue_jobs()
    ahead = redis.zscore(RQ_SCHEDULER_SET, "cronwork-minutely")
    redis.zadd(RQ_SCHEDULER_SET, {"cronwork-minutely": (T0 + timedelta(minutes=1)).timestamp()})
    s.enqueue_jobs()  # a stale replica working on an old tick
    assert redis.zscore(RQ_SCHEDULER_SET, "cronwork-minutely") == ahead


def test_missed_ticks_run_latest_within_grace_and_record_the_rest(redis: Redis) -> None:
    clock = setup(redis)
    # Scheduler down from 12:00:30 to 12:05:20 local: ticks at :01..:05 were missed.
    clock.now = T0 + timedelta(minutes=5, seconds=20)
    enqueued = scheduler(redis, clock).enqueue_jobs()
    latest = int((T0 + timedelta(minutes=5)).timestamp())
    assert enqueued == [f"cronwork-minutely-{latest}"]
    states = {r["tick"]: r["state"] for r in Ledger(redis, KEYS).history("minutely")}
    assert states[latest] == "enqueued"
    assert sorted(t for t, s in states.items() if s == "missed") == [
        int((T0 + timedelta(minutes=m)).timestamp()) for m in range(1, 5)
    ]
    assert json_queue("default", redis).count == 1  # never a burst


def test_missed_tick_beyond_grace_is_recorded_not_run(redis: Redis) -> None:
    text = EVERY_MINUTE.replace('cron = "* * * * *"', 'cron = "0 * * * *"') + 'misfire_grace = "10m"\n'
    clock = setup(redis, text)
    clock.now = T0 + timedelta(hours=1, minutes=11)
    assert scheduler(redis, clock).enqueue_jobs() == []
    [record] = Ledger(redis, KEYS).history("minutely")
    assert record["state"] == "missed"
    assert redis.zscore(RQ_SCHEDULER_SET, "cronwork-minutely") == (T0 + timedelta(hours=2)).timestamp()


def test_skip_policy_runs_no_missed_tick(redis: Redis) -> None:
    clock = setup(redis, EVERY_MINUTE + 'misfire = "skip"\n')
    clock.now = T0 + timedelta(minutes=2, seconds=30)
    assert scheduler(redis, clock).enqueue_jobs() == []
    assert [r["state"] for r in Ledger(redis, KEYS).history("minutely")] == ["missed", "missed"]


def test_paused_schedule_records_its_ticks_and_runs_nothing(redis: Redis) -> None:
    clock = setup(redis)
    redis.hset(KEYS.paused, "minutely", json.dumps({"reason": "db migration"}))
    clock.now = T0 + timedelta(minutes=1, seconds=1)
    assert scheduler(redis, clock).enqueue_jobs() == []
    assert Ledger(redis, KEYS).history("minutely")[0]["state"] == "paused"
    assert json_queue("default", redis).count == 0


def test_foreign_one_off_jobs_still_go_through_rq_scheduler(redis: Redis) -> None:
    clock = setup(redis)
    foreign = Scheduler(connection=redis, job_class=JSONJob).enqueue_at(T0.replace(tzinfo=None), health_check)
    clock.now = T0 + timedelta(seconds=1)
    scheduler(redis, clock).enqueue_jobs()
    assert foreign.id in json_queue("default", redis).job_ids
    assert redis.zscore(RQ_SCHEDULER_SET, foreign.id) is None


def test_lock_has_an_owner_and_a_short_ttl(redis: Redis, redis_url: str) -> None:
    clock = Clock(T0)
    active = scheduler(redis, clock)
    standby = CronworkScheduler(Redis.from_url(redis_url), KEYS, clock=clock)
    assert active.acquire_lock() and not standby.acquire_lock()
    standby._lock_acquired = True
    standby.remove_lock()  # must not release a lock it does not own
    assert not standby.acquire_lock()
    assert 0 < redis.pttl(KEYS.scheduler_lock) <= 3000
    redis.delete(KEYS.scheduler_lock)  # as if the owner died and its TTL ran out
    assert standby.acquire_lock() and not active.acquire_lock()


def test_the_next_pass_is_at_the_earliest_due_score(redis: Redis) -> None:
    clock = setup(redis)
    clock.now = T0 + timedelta(seconds=59, milliseconds=800)
    assert scheduler(redis, clock).next_instant() == (T0 + timedelta(minutes=1)).timestamp()
    clock.now = T0 + timedelta(seconds=10)
    assert scheduler(redis, clock).next_instant() == clock() + 1.0


def test_ticks_a_few_seconds_late_are_all_caught_up(redis: Redis) -> None:
    text = '[schedules.fast]\nfunc = "jobs.system.health_check"\nevery = "1s"\noverlap = "allow"\n'
    clock = setup(redis, text)
    # A standby taking over 4.5 s after the active scheduler died: nothing may be lost.
    clock.now = T0 + timedelta(seconds=4, milliseconds=500)
    enqueued = scheduler(redis, clock).enqueue_jobs()
    assert enqueued == [f"cronwork-fast-{int(T0.timestamp()) + s}" for s in range(1, 5)]
    assert all(r["state"] == "enqueued" for r in Ledger(redis, KEYS).history("fast"))


def test_missed_tick_never_overwrites_a_tick_that_ran(redis: Redis) -> None:
    clock = setup(redis)
    clock.now = T0 + timedelta(minutes=1, seconds=1)
    s = scheduler(redis, clock)
    s.enqueue_jobs()
    # A stale replica, far behind, sees the same tick as a misfire.
    redis.zadd(RQ_SCHEDULER_SET, {"cronwork-minutely": (T0 + timedelta(minutes=1)).timestamp()})
    clock.now = T0 + timedelta(minutes=1, seconds=40)
    s.enqueue_jobs()
    [record] = Ledger(redis, KEYS).history("minutely")
    assert record["state"] == "enqueued"


ONE_OFF = """
[schedules.backfill]
func = "jobs.system.health_check"
at = 2026-11-22T12:05:00
"""


def test_a_fired_one_off_is_remembered_and_its_past_at_accepted_afterwards(redis: Redis) -> None:
    clock = setup(redis, ONE_OFF)
    tick = T0 + timedelta(minutes=5)  # 12:05 in Shanghai
    clock.now = tick + timedelta(milliseconds=20)
    assert scheduler(redis, clock).enqueue_jobs() == [f"cronwork-backfill-{int(tick.timestamp())}"]
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("backfill")) is None
    fired = fired_oneoffs(redis, KEYS)
    assert fired == {"backfill": int(tick.timestamp())}

    later = tick + timedelta(days=2)
    specs = schedule_from(ONE_OFF, later).specs  # parsing is pure: a past `at` is no error
    plan = apply_plan(redis, specs, KEYS, later)  # the restart: done, so unregistered, not re-run
    assert (plan.added, plan.updated, plan.removed) == ([], [], ["backfill"])
    assert "handled it at that tick" in plan.expired["backfill"]
    assert not apply_plan(redis, specs, KEYS, later).has_changes
    moved = schedule_from(ONE_OFF.replace("12:05", "12:06"), later).specs  # another instant
    assert "never ran here" in compute_plan(redis, moved, KEYS, later).expired["backfill"]


def test_two_replicas_and_1000_schedules_due_in_the_same_second_enqueue_each_once(
    redis: Redis, redis_url: str
) -> None:
    text = "".join(
        f'[schedules.s{i:04d}]\nfunc = "jobs.system.health_check"\ncron = "* * * * *"\ntimeout = "30s"\n'
        for i in range(1000)
    )
    clock = setup(redis, text)
    clock.now = T0 + timedelta(minutes=1, milliseconds=5)
    replicas = [scheduler(redis, clock), CronworkScheduler(Redis.from_url(redis_url), KEYS, clock=clock)]
    # Both plan the same pass, then fire at once: the scripts' fence lets one push each tick.
    plans = [r.plan(clock()) for r in replicas]
    with ThreadPoolExecutor(2) as pool:
        pushed = list(pool.map(lambda rp: rp[0].fire(rp[1]), zip(replicas, plans, strict=True)))
    assert sorted(pushed[0] + pushed[1]) == sorted(
        KEYS.run_id(f"s{i:04d}", int((T0 + timedelta(minutes=1)).timestamp())) for i in range(1000)
    )
    assert json_queue("default", redis).count == 1000
    assert [r.enqueue_jobs() for r in replicas] == [[], []]
    scores = {s for _, s in redis.zrange(RQ_SCHEDULER_SET, 0, -1, withscores=True)}
    assert scores == {(T0 + timedelta(minutes=2)).timestamp()}
