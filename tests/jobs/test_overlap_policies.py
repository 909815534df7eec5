"""Overlap policies buffer_one and cancel_other with real worker processes and Redis (issue 14)."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis import Redis
from rq import Worker
from rq.registry import CanceledJobRegistry, FailedJobRegistry
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, User
from cronwork.runjob import build_run_job
from cronwork.runs import WAITER_TTL, RunState, StartKind, WaitKind
from cronwork.serializer import JSONJob
from jobs.outcomes import RunRecorder
from jobs.overlap import stop_holder, wait_for_turn
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import KEYS, children, enqueue_run, kill9, record, rq_status_is, state_is
from tests.scheduler_boot.helpers import schedule_from

pytestmark = pytest.mark.slow

SLEEP = (
    'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\ntimeout = "{timeout}"\noverlap = "{policy}"\n'
    "args = [{seconds}]\n"
)


def workers(redis: Redis, processes: Processes, count: int) -> list[subprocess.Popen[bytes]]:
    """`count` real workers, once every one of them is registered (ready to dequeue)."""
    started = [processes.start("-m", "jobs.worker", "default", name=f"worker-{i}") for i in range(count)]
    wait_until(lambda: len(Worker.all(connection=redis)) == count, timeout=30)
    return started


def run(redis: Redis, name: str, policy: str, seconds: float, tick: datetime, timeout: str = "20s") -> str:
    return enqueue_run(redis, name, SLEEP.format(policy=policy, seconds=seconds, timeout=timeout), tick)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_buffer_one_runs_one_waits_then_runs_and_a_third_is_skipped(
    redis: Redis, processes: Processes
) -> None:
    # Three workers: a run waits in its horse, so the third run needs a worker of its own to
    # arrive while the second one waits.
    workers(redis, processes, 3)
    base = datetime.now(UTC).replace(microsecond=0)
    # The first run holds the lock until the test releases it: however slow the machine, the
    # second and third runs meet it running.
    held = 'func = "jobs.diagnostics.hold"\ncron = "0 0 1 1 *"\ntimeout = "40s"\noverlap = "buffer_one"\n'
    first = enqueue_run(redis, "nightly", held + 'args = ["release-nightly", 30]\n', base - timedelta(seconds=3))
    wait_until(lambda: state_is(redis, "nightly", first, "running"), timeout=20)
    second = run(redis, "nightly", "buffer_one", 2, base - timedelta(seconds=2), timeout="4s")
    wait_until(lambda: state_is(redis, "nightly", second, "buffered"), timeout=20)
    waiting = record(redis, "nightly", second)
    assert waiting["waiting_for"] == first and "started_at" not in waiting
    third = run(redis, "nightly", "buffer_one", 0.5, base - timedelta(seconds=1))
    wait_until(lambda: state_is(redis, "nightly", third, "skipped_overlap"), timeout=20)
    assert state_is(redis, "nightly", second, "buffered")  # still waiting for the first one
    # Its wait (≥ 3 s) and its sleep (2 s) exceed its 4 s timeout: the timeout counts from its
    # start. The wait is made long enough on purpose, then the first run is released.
    time.sleep(max(3.0 - (datetime.now(UTC) - at(waiting["buffered_at"])).total_seconds(), 0))
    redis.rpush("release-nightly", "go")

    wait_until(lambda: state_is(redis, "nightly", second, "succeeded"), timeout=20)
    ran, waited, skipped = (record(redis, "nightly", job) for job in (first, second, third))
    assert ran["state"] == "succeeded" and "waiting_for" not in ran
    assert skipped["result"] == {"skipped": "overlap", "running": first}
    # The waiter started once the first one ended, and promptly; its own time excludes the wait.
    assert at(waited["buffered_at"]) < at(ran["ended_at"]) <= at(waited["started_at"])
    assert (at(waited["started_at"]) - at(ran["ended_at"])).total_seconds() < 1.5
    assert 1.9 < waited["duration"] < 3.5 and waited["attempt"] == 1
    assert redis.get(KEYS.overlap_lock("nightly")) is None
    assert redis.get(KEYS.overlap_waiter("nightly")) is None
    wait_until(lambda: rq_status_is(redis, second, "finished"), timeout=10)


def test_cancel_other_stops_the_running_run_which_is_cancelled_not_failed(
    app: Flask, redis: Redis, processes: Processes
) -> None:
    db.session.add(User(username="root", email="r@x", is_admin=True))
    db.session.commit()
    workers(redis, processes, 2)
    base = datetime.now(UTC).replace(microsecond=0)
    first = run(redis, "latest", "cancel_other", 60, base - timedelta(seconds=1))
    wait_until(lambda: state_is(redis, "latest", first, "running"), timeout=20)
    second = run(redis, "latest", "cancel_other", 0.5, base)
    wait_until(lambda: state_is(redis, "latest", second, "succeeded", "skipped_overlap"), timeout=20)

    stopped, newer = record(redis, "latest", first), record(redis, "latest", second)
    assert newer["state"] == "succeeded" and newer["waiting_for"] == first
    assert stopped["state"] == "cancelled" and stopped["cancelled_by"] == second
    assert stopped["result"] == {"cancelled_by": second} and "error" not in stopped
    assert stopped["duration"] < 10  # stopped at once, not after its 60 s
    assert at(stopped["ended_at"]) <= at(newer["started_at"])
    # Not a failure: no streak, no admin alert, not retried, not in rq's failed registry.
    assert redis.get(KEYS.failure_streak("latest")) is None
    wait_until(lambda: rq_status_is(redis, first, "canceled"), timeout=10)
    assert first not in FailedJobRegistry("default", connection=redis)
    assert first in CanceledJobRegistry("default", connection=redis)
    db.session.expire_all()
    assert not list(db.session.scalars(select(Notification).where(Notification.kind == "job_failure")))
    assert redis.get(KEYS.overlap_lock("latest")) is None


def test_cancel_other_gives_up_on_a_run_that_cannot_be_stopped(redis: Redis) -> None:
    # The holder's worker is gone: its job runs on no worker, its lock lives on until it expires.
    tick = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    spec = schedule_from(
        f"[schedules.latest]\n{SLEEP.format(policy='cancel_other', seconds=1, timeout='20s')}", tick
    ).specs["latest"]
    recorder = RunRecorder(redis, KEYS)
    holder_id, waiter_id = (
        KEYS.run_id("latest", int(tick.timestamp())),
        KEYS.run_id("latest", 1 + int(tick.timestamp())),
    )
    holder = build_run_job(redis, spec, tick, holder_id, "test", JSONJob)
    waiter = build_run_job(redis, spec, tick + timedelta(seconds=1), waiter_id, "test", JSONJob)
    assert recorder.started(holder, 90, WAITER_TTL)[0] is StartKind.STARTED
    assert recorder.started(waiter, 90, WAITER_TTL) == (StartKind.BUFFERED, holder_id)
    assert not stop_holder(recorder, waiter, holder_id)  # marked, but no worker to stop it
    assert record(redis, "latest", holder_id)["cancelled_by"] == waiter_id
    assert wait_for_turn(recorder, waiter, 90, bound=0.5) == (WaitKind.WAITING, holder_id)
    # The runtime then ends the waiter skipped; its place is freed for the next run.
    assert recorder.skipped_overlap(waiter, {"skipped": "overlap"}).current
    assert record(redis, "latest", waiter_id)["state"] == RunState.SKIPPED_OVERLAP
    assert redis.get(KEYS.overlap_waiter("latest")) is None


def test_buffer_one_a_killed_waiter_frees_its_place_for_the_next_run(redis: Redis, processes: Processes) -> None:
    workers(redis, processes, 3)
    base = datetime.now(UTC).replace(microsecond=0)
    held = 'func = "jobs.diagnostics.hold"\ncron = "0 0 1 1 *"\ntimeout = "40s"\noverlap = "buffer_one"\n'
    first = enqueue_run(redis, "waiters", held + 'args = ["release-waiters", 30]\n', base - timedelta(seconds=3))
    wait_until(lambda: state_is(redis, "waiters", first, "running"), timeout=20)
    second = run(redis, "waiters", "buffer_one", 0.5, base - timedelta(seconds=2))
    wait_until(lambda: state_is(redis, "waiters", second, "buffered"), timeout=20)

    # SIGKILL the waiter's worker and its work horse, as an OOM killer would.
    waiter = Worker.find_by_key(f"rq:worker:{record(redis, 'waiters', second)['worker']}", connection=redis)
    assert waiter is not None and waiter.pid
    for pid in [waiter.pid, *children(waiter.pid)]:
        kill9(pid)
    # Its place lapses within WAITER_TTL; the next run then takes it instead of being skipped.
    wait_until(lambda: redis.get(KEYS.overlap_waiter("waiters")) is None, timeout=WAITER_TTL + 2)
    third = run(redis, "waiters", "buffer_one", 0.5, base - timedelta(seconds=1))
    wait_until(lambda: state_is(redis, "waiters", third, "buffered", "skipped_overlap"), timeout=WAITER_TTL + 15)
    assert record(redis, "waiters", third)["state"] == "buffered"
    redis.rpush("release-waiters", "go")
    wait_until(lambda: state_is(redis, "waiters", third, "succeeded"), timeout=20)
    assert record(redis, "waiters", first)["state"] == "succeeded"
