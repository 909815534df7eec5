"""The dispatch script against a real Redis: the fence, the push as rq does it, the history trim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq.job import JobStatus
from rq.registry import FinishedJobRegistry
from rq.results import Result
from rq.scripts import _build_hset_args

from cronwork.dispatch import Dispatcher, PlannedRun, PlannedTemplate
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.ledger import Ledger
from cronwork.runjob import RunJobHashes, build_run_job
from cronwork.runs import RunState, Trigger
from cronwork.serializer import JSONJob, json_queue
from cronwork.spec import ScheduleSpec
from tests.scheduler_boot.helpers import schedule_from

KEYS = Keys()
T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)

SPECS = """
[schedules.plain]
func = "jobs.system.health_check"
every = "1s"
overlap = "allow"

[schedules.rich]
func = "jobs.system.health_check"
cron = "*/5 * * * *"
queue = "reports"
timeout = "45s"
retries = 2
retry_backoff = ["5s", "20s"]
kwargs = { label = "nightly é", depth = 3 }
"""


def spec(name: str) -> ScheduleSpec:
    return schedule_from(SPECS, T0).specs[name]


def template(redis: Redis, s: ScheduleSpec, ticks: list[datetime], **changes: object) -> PlannedTemplate:
    queue = json_queue(s.queue, redis)
    hashes = RunJobHashes(redis, queue)
    fields: dict[str, object] = dict(
        name=s.name,
        member=KEYS.template_id(s.name),
        planned_score=ticks[0].timestamp(),
        next_score=(ticks[-1] + timedelta(seconds=1)).timestamp(),
        keep_runs=100,
        paused=False,
        queue_key=queue.key,
        finished_key=queue.finished_job_registry.key,
        canceled_key=queue.canceled_job_registry.key,
        runs=[
            PlannedRun(int(t.timestamp()), KEYS.run_id(s.name, int(t.timestamp())), hashes.fields(s, t, Trigger.SCHEDULE))
            for t in ticks
        ],
    )
    fields.update(changes)
    return PlannedTemplate(**fields)  # type: ignore[arg-type]


def due(redis: Redis, s: ScheduleSpec, at: datetime) -> None:
    redis.zadd(RQ_SCHEDULER_SET, {KEYS.template_id(s.name): at.timestamp()})


@pytest.mark.parametrize("name", ["plain", "rich"])
def test_run_job_hash_is_what_rq_itself_would_store(redis: Redis, name: str) -> None:
    """rq contract: RunJobHashes rebuilds only the tick-dependent fields of Job.to_dict()."""
    s = spec(name)
    queue = json_queue(s.queue, redis)
    hashes = RunJobHashes(redis, queue)
    for tick in (T0, T0 + timedelta(minutes=5), T0 + timedelta(days=40)):
        for trigger in Trigger:
            fast = hashes.fields(s, tick, trigger)
            job = build_run_job(redis, s, tick, "x", trigger)
            queue._prepare_for_queue(job)
            slow = _build_hset_args(job)
            ours = dict(zip(fast[::2], fast[1::2], strict=True))
            theirs = dict(zip(slow[::2], slow[1::2], strict=True))
            for stamp in ("created_at", "enqueued_at"):
                ours.pop(stamp, None)
                theirs.pop(stamp)
            assert ours == theirs


def test_pushed_job_reads_back_as_the_run_rq_would_have_enqueued(redis: Redis) -> None:
    s = spec("rich")
    due(redis, s, T0)
    done = Dispatcher(redis, KEYS, "replica-a").dispatch([template(redis, s, [T0])])
    job_id = KEYS.run_id("rich", int(T0.timestamp()))
    assert [j for j, _ in done.enqueued] == [job_id]
    assert json_queue("reports", redis).job_ids == [job_id]
    job = JSONJob.fetch(job_id, connection=redis)
    assert job.get_status() == JobStatus.QUEUED and job.origin == "reports"
    assert job.kwargs == {"label": "nightly é", "depth": 3, "scheduled_for": T0.isoformat()}
    assert job.meta["tick"] == int(T0.timestamp()) and job.timeout == 45 and job.retries_left == 2
    seconds, micros = redis.time()
    assert abs(job.enqueued_at.replace(tzinfo=UTC).timestamp() - (seconds + micros / 1e6)) < 5
    [record] = Ledger(redis, KEYS).history("rich")
    assert record["state"] == RunState.ENQUEUED and record["scheduler"] == "replica-a"
    assert record["enqueued_at"].startswith(job.enqueued_at.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    assert redis.sismember("rq:queues", "rq:queue:reports")


def test_a_moved_template_is_left_alone_by_a_stale_plan(redis: Redis) -> None:
    s = spec("plain")
    due(redis, s, T0)
    stale = template(redis, s, [T0])
    first = Dispatcher(redis, KEYS, "a").dispatch([template(redis, s, [T0])])
    again = Dispatcher(redis, KEYS, "b").dispatch([stale])  # a second replica, same plan
    assert len(first.enqueued) == 1 and again.enqueued == [] and again.moved == 1
    assert json_queue("default", redis).count == 1
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("plain")) == (T0 + timedelta(seconds=1)).timestamp()


def test_a_score_reset_to_a_handled_tick_never_runs_it_again(redis: Redis) -> None:
    """A hand-edited score (or a re-sync from a slow clock) behind last_tick: nothing re-runs."""
    s = spec("plain")
    due(redis, s, T0)
    Dispatcher(redis, KEYS, "a").dispatch([template(redis, s, [T0, T0 + timedelta(seconds=1)])])
    due(redis, s, T0)  # back to a handled tick
    replay = Dispatcher(redis, KEYS, "a").dispatch([template(redis, s, [T0, T0 + timedelta(seconds=1)])])
    assert replay.enqueued == [] and json_queue("default", redis).count == 2
    due(redis, s, T0 + timedelta(seconds=1))
    later = Dispatcher(redis, KEYS, "a").dispatch([template(redis, s, [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)])])
    assert [j for j, _ in later.enqueued] == [KEYS.run_id("plain", int(T0.timestamp()) + 2)]


def test_a_manual_run_at_the_same_second_takes_the_tick(redis: Redis) -> None:
    s = spec("plain")
    due(redis, s, T0)
    redis.set(KEYS.claim("plain", int(T0.timestamp())), "manual")
    done = Dispatcher(redis, KEYS, "a").dispatch([template(redis, s, [T0])])
    assert done.enqueued == [] and json_queue("default", redis).count == 0


def test_paused_and_missed_ticks_are_recorded_without_a_job(redis: Redis) -> None:
    s = spec("plain")
    due(redis, s, T0)
    ticks = [T0, T0 + timedelta(seconds=1)]
    plan = template(redis, s, ticks[1:], planned_score=T0.timestamp(), paused=True, missed=[int(T0.timestamp())])
    done = Dispatcher(redis, KEYS, "a").dispatch([plan])
    assert done.missed == [("plain", int(T0.timestamp()))]
    assert done.paused == [("plain", int(ticks[1].timestamp()))]
    states = [r["state"] for r in Ledger(redis, KEYS).history("plain")]
    assert states == [RunState.PAUSED, RunState.MISSED]
    assert json_queue("default", redis).count == 0


def test_history_is_trimmed_to_keep_runs_but_failed_and_unfinished_runs_stay(redis: Redis) -> None:
    s = spec("plain")
    queue = json_queue("default", redis)
    dispatcher = Dispatcher(redis, KEYS, "a")
    ticks = [T0 + timedelta(seconds=i) for i in range(8)]
    for tick in ticks[:3]:
        due(redis, s, tick)
        dispatcher.dispatch([template(redis, s, [tick], keep_runs=3)])
    ids = [KEYS.run_id("plain", int(t.timestamp())) for t in ticks]
    # As the worker leaves them: 0 succeeded (with its result), 1 failed, 2 still queued.
    job = JSONJob.fetch(ids[0], connection=redis)
    with redis.pipeline() as pipe:
        queue.remove(job, pipeline=pipe)
        job.set_status(JobStatus.FINISHED, pipeline=pipe)
        FinishedJobRegistry("default", connection=redis, job_class=JSONJob).add(job, 3600, pipeline=pipe)
        Result.create(job, Result.Type.SUCCESSFUL, ttl=3600, return_value=1, pipeline=pipe)
        pipe.execute()
    ledger = Ledger(redis, KEYS)
    redis.hset(ledger.run_key("plain", int(ticks[0].timestamp())), "state", RunState.SUCCEEDED)
    redis.hset(ledger.run_key("plain", int(ticks[1].timestamp())), "state", RunState.FAILED)
    for tick in ticks[3:]:
        due(redis, s, tick)
        dispatcher.dispatch([template(redis, s, [tick], keep_runs=3)])

    assert [r["tick"] for r in ledger.history("plain", 100)] == [int(t.timestamp()) for t in reversed(ticks[5:])]
    # The run that ended well is gone entirely, whatever rq kept of it.
    gone = ids[0]
    assert redis.keys(f"*{gone}*") == []
    assert gone.encode() not in redis.zrange(FinishedJobRegistry("default", connection=redis).key, 0, -1)
    # The failed one and the still-queued ones keep their job and record until their TTLs.
    for kept in ids[1:]:
        assert redis.exists(f"rq:job:{kept}")
    assert redis.exists(ledger.run_key("plain", int(ticks[1].timestamp())))
    assert queue.count == 7  # nothing was taken off the queue


def test_a_tick_still_ahead_of_redis_clock_is_never_pushed(redis: Redis) -> None:
    """A replica whose clock runs fast plans a tick Redis's clock has not reached: left alone."""
    s = spec("plain")
    seconds, _ = redis.time()
    ahead = datetime.fromtimestamp(seconds + 30, UTC)
    due(redis, s, ahead)
    done = Dispatcher(redis, KEYS, "fast").dispatch([template(redis, s, [ahead])])
    assert (done.early, done.enqueued) == (1, [])
    assert json_queue("default", redis).count == 0 and Ledger(redis, KEYS).history("plain") == []
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("plain")) == ahead.timestamp()


def test_a_redis_that_lost_its_scripts_still_gets_each_push_once(redis: Redis) -> None:
    """After a Redis restart the script cache is empty: NOSCRIPT changes nothing, the batch is
    sent again with the script."""
    s = spec("plain")
    due(redis, s, T0)
    dispatcher = Dispatcher(redis, KEYS, "a")
    batches = dispatcher.prepare([template(redis, s, [T0])])
    redis.script_flush()
    done = dispatcher.send(batches)
    assert len(done.enqueued) == 1 and json_queue("default", redis).count == 1
    assert dispatcher.send(batches).moved == 1  # the same prepared batch again: fenced
