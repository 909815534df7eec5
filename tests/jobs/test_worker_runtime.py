"""Worker runtime with real worker processes: timeouts, retries, overlap, kill -9, requeue, alerts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, User
from cronwork.ledger import Ledger
from cronwork.serializer import JSONJob, json_queue
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import KEYS, children, enqueue_run, kill9, record, rq_status_is, state_is

pytestmark = pytest.mark.slow

SLEEP = 'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\ntimeout = "{timeout}"\nargs = [{seconds}]\n'


def worker(processes: Processes, name: str = "worker", *extra: str) -> subprocess.Popen[bytes]:
    return processes.start("-m", "jobs.worker", "default", *extra, name=name)


def test_function_outside_jobs_package_is_refused_without_running(
    redis: Redis, processes: Processes, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    job = json_queue("default", redis).enqueue("os.system", f"touch {marker}")
    proc = worker(processes, "worker", "--burst")
    assert proc.wait(60) == 0
    job.refresh()
    assert job.get_status() == "failed"
    assert "ForbiddenJobFunction" in job.latest_result().exc_string
    assert not marker.exists()


def test_sleeping_job_is_timed_out(redis: Redis, processes: Processes) -> None:
    job_id = enqueue_run(redis, "sleepy", SLEEP.format(timeout="2s", seconds=30) + 'overlap = "allow"')
    worker(processes)
    wait_until(lambda: state_is(redis, "sleepy", job_id, "timed_out"), timeout=20)
    entry = record(redis, "sleepy", job_id)
    assert entry["error_type"] == "JobTimeoutException"
    assert 1.5 < entry["duration"] < 10
    wait_until(lambda: job_id in FailedJobRegistry("default", connection=redis), timeout=10)


@pytest.mark.parametrize("keep_running", [False, True])
def test_job_catching_exception_cannot_swallow_its_timeout(
    redis: Redis, processes: Processes, keep_running: bool
) -> None:
    body = (
        'func = "jobs.diagnostics.sleep_ignoring_timeout"\ncron = "0 0 1 1 *"\ntimeout = "2s"\n'
        f'overlap = "allow"\nkwargs = {{ seconds = 60, keep_running = {str(keep_running).lower()} }}\n'
    )
    job_id = enqueue_run(redis, "swallower", body)
    worker(processes)
    # Returns right after catching → TimeoutSwallowed; keeps sleeping → SIGKILLed 10 s later.
    wait_until(lambda: state_is(redis, "swallower", job_id, "timed_out", "succeeded", "failed"), timeout=40)
    assert record(redis, "swallower", job_id)["state"] == "timed_out"
    wait_until(lambda: rq_status_is(redis, job_id, "failed"), timeout=10)


def test_retries_follow_the_backoff_and_each_attempt_is_recorded(redis: Redis, processes: Processes) -> None:
    body = 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\nretries = 2\nretry_backoff = ["2s", "4s"]\ntimeout = "10s"'
    job_id = enqueue_run(redis, "flaky", body)
    worker(processes)
    wait_until(lambda: state_is(redis, "flaky", job_id, "failed"), timeout=40)
    attempts = Ledger(redis, KEYS).attempts("flaky", int(job_id.rsplit("-", 1)[1]))
    assert [a["state"] for a in attempts] == ["retrying", "retrying", "failed"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    from datetime import datetime

    starts = [datetime.fromisoformat(a["started_at"]) for a in attempts]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    # rq schedules retries in whole seconds, so one may start up to a second early.
    assert 1 <= gaps[0] < 4.5 and 3 <= gaps[1] < 6.5, gaps
    assert attempts[-1]["error"] == "diagnostic failure"


def test_overlap_skip_with_two_workers(redis: Redis, processes: Processes) -> None:
    body = SLEEP.format(timeout="20s", seconds=4)
    first = enqueue_run(redis, "exclusive", body)
    time.sleep(1.1)
    second = enqueue_run(redis, "exclusive", body)
    worker(processes, "worker-a")
    worker(processes, "worker-b")
    wait_until(
        lambda: (
            state_is(redis, "exclusive", first, "succeeded", "skipped_overlap")
            and state_is(redis, "exclusive", second, "succeeded", "skipped_overlap")
        ),
        timeout=30,
    )
    states = sorted([record(redis, "exclusive", first)["state"], record(redis, "exclusive", second)["state"]])
    assert states == ["skipped_overlap", "succeeded"]
    assert not redis.exists(KEYS.overlap_lock("exclusive"))  # the owner released its own lock


def test_killed_worker_job_is_abandoned_then_requeued_with_its_tick(
    app: Flask, redis: Redis, processes: Processes, process_env: dict[str, str]
) -> None:
    job_id = enqueue_run(redis, "victim", SLEEP.format(timeout="2m", seconds=6))
    doomed = worker(processes, "doomed")
    wait_until(lambda: state_is(redis, "victim", job_id, "running"), timeout=20)
    horses = children(doomed.pid)
    kill9(doomed.pid)
    for pid in horses:
        kill9(pid)
    killed_at = time.monotonic()
    worker(processes, "rescuer")
    wait_until(lambda: state_is(redis, "victim", job_id, "abandoned"), timeout=120, interval=0.5)
    assert time.monotonic() - killed_at < 120
    wait_until(lambda: job_id in FailedJobRegistry("default", connection=redis), timeout=10)

    # Requeue with stock `rq requeue`: the run keeps its scheduled_for and now succeeds.
    rq = str(Path(sys.executable).parent / "rq")
    subprocess.run(
        [rq, "requeue", "-u", process_env["REDIS_URL"], "--queue", "default", job_id],
        check=True,
        capture_output=True,
    )
    wait_until(lambda: state_is(redis, "victim", job_id, "succeeded"), timeout=30)
    wait_until(lambda: rq_status_is(redis, job_id, "finished"), timeout=10)
    job = JSONJob.fetch(job_id, connection=redis)
    assert job.kwargs["scheduled_for"] == job.meta["scheduled_for"]


def test_run_dequeued_by_a_worker_that_died_before_starting_it_is_requeued_and_runs(
    redis: Redis, processes: Processes
) -> None:
    """rq fails such a run as "stuck in intermediate queue"; nothing of it ran, so ours requeues it."""
    job_id = enqueue_run(redis, "orphan", SLEEP.format(timeout="30s", seconds=0))
    queue = json_queue("default", redis)
    # What a worker SIGKILLed right after its dequeue leaves behind: the job moved (LMOVE)
    # to the intermediate list, not started, and rq's cleanup first saw it there 2 minutes ago.
    assert redis.lmove(queue.key, queue.intermediate_queue_key) == job_id.encode()
    first_seen = queue.intermediate_queue.get_first_seen_key(job_id)
    redis.set(first_seen, time.time() - 120)
    worker(processes)
    wait_until(lambda: state_is(redis, "orphan", job_id, "succeeded", "failed"), timeout=60, interval=0.5)
    assert record(redis, "orphan", job_id)["state"] == "succeeded"
    wait_until(lambda: rq_status_is(redis, job_id, "finished"), timeout=10)
    assert job_id not in FailedJobRegistry("default", connection=redis)
    assert redis.llen(queue.intermediate_queue_key) == 0 and not redis.exists(first_seen)


def test_stale_intermediate_entry_of_a_run_that_finished_does_not_fail_it(
    redis: Redis, processes: Processes
) -> None:
    """A dequeue cut short by a Redis outage can leave the id behind after the run (retried)
    succeeded; rq's cleanup would then fail the finished run as stuck (seen in bench/chaos)."""
    job_id = enqueue_run(redis, "done", SLEEP.format(timeout="30s", seconds=0))
    queue = json_queue("default", redis)
    worker(processes)
    wait_until(lambda: rq_status_is(redis, job_id, "finished"), timeout=30)
    redis.lpush(queue.intermediate_queue_key, job_id)
    redis.set(queue.intermediate_queue.get_first_seen_key(job_id), time.time() - 120)
    wait_until(lambda: redis.llen(queue.intermediate_queue_key) == 0, timeout=40, interval=0.5)
    assert rq_status_is(redis, job_id, "finished")
    assert record(redis, "done", job_id)["state"] == "succeeded"
    assert job_id not in FailedJobRegistry("default", connection=redis) and not queue.job_ids


def test_failed_cli_lists_and_requeues(app: Flask, redis: Redis, processes: Processes) -> None:
    job_id = enqueue_run(
        redis, "broken", 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\ntimeout = "10s"'
    )
    proc = worker(processes, "worker", "--burst")
    assert proc.wait(60) == 0
    runner = app.test_cli_runner()
    listed = json.loads(runner.invoke(args=["failed", "list", "--json"]).output)
    assert [(r["job_id"], r["schedule"], r["error"]) for r in listed] == [
        (job_id, "broken", "diagnostic failure")
    ]

    out = runner.invoke(args=["failed", "requeue", "--all", "--schedule", "broken"])
    assert out.exit_code == 0 and f"requeued {job_id}" in out.output
    assert job_id in json_queue("default", redis).job_ids
    assert record(redis, "broken", job_id)["state"] == "enqueued"
    bad = runner.invoke(args=["failed", "requeue", "nope"])
    assert bad.exit_code != 0 and "no job 'nope'" in bad.output


def admin_notifications() -> list[Notification]:
    db.session.expire_all()
    return list(db.session.scalars(select(Notification).where(Notification.kind == "job_failure")))


def test_final_failures_alert_once_per_streak_then_pause(
    app: Flask, redis: Redis, processes: Processes
) -> None:
    db.session.add_all([User(username="root", email="r@x", is_admin=True), User(username="u", email="u@x")])
    db.session.commit()
    body = 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\ntimeout = "10s"\npause_after_failures = 3'
    for _ in range(3):
        enqueue_run(redis, "doomed", body)
        time.sleep(1.05)
    proc = worker(processes, "worker", "--burst")
    assert proc.wait(60) == 0
    notes = admin_notifications()
    # One for the streak, one saying it was paused after 3 in a row; only admins get them.
    assert len(notes) == 2 and {n.user_id for n in notes} == {1}
    assert "paused" in notes[-1].title
    assert "auto-paused after 3" in json.loads(redis.hget(KEYS.paused, "doomed"))["reason"]


def test_database_outage_fails_the_run_and_the_alert_arrives_later(
    app: Flask, redis: Redis, processes: Processes, database_url: str
) -> None:
    db.session.add(User(username="root", email="r@x", is_admin=True))
    db.session.commit()
    db.session.remove()
    db.engine.dispose()
    db_file = Path(database_url.removeprefix("sqlite:///"))
    hidden = db_file.with_suffix(".away")
    shutil.move(db_file, hidden)  # the database is gone: every query fails
    body = 'func = "jobs.diagnostics.count_users"\ncron = "0 0 1 1 *"\ntimeout = "10s"\nretries = 1\nretry_backoff = ["1s"]'
    job_id = enqueue_run(redis, "needs_db", body)
    proc = worker(processes)
    wait_until(lambda: state_is(redis, "needs_db", job_id, "failed"), timeout=30)
    assert proc.poll() is None  # the worker itself survives
    assert [a["state"] for a in Ledger(redis, KEYS).attempts("needs_db", int(job_id.rsplit("-", 1)[1]))] == [
        "retrying",
        "failed",
    ]
    wait_until(lambda: redis.llen(KEYS.pending_alerts) == 1, timeout=10)

    db_file.unlink(missing_ok=True)
    shutil.move(hidden, db_file)  # the database is back
    wait_until(lambda: len(admin_notifications()) == 1, timeout=40, interval=0.5)
    assert redis.llen(KEYS.pending_alerts) == 0


def test_sigterm_lets_the_running_job_finish_then_exits_zero(redis: Redis, processes: Processes) -> None:
    job_id = enqueue_run(redis, "long", SLEEP.format(timeout="30s", seconds=4))
    proc = worker(processes)
    wait_until(lambda: state_is(redis, "long", job_id, "running"), timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert record(redis, "long", job_id)["state"] == "succeeded"
    log = processes.output(proc)
    assert f"job_id={job_id} schedule=long" in log


def test_sigterm_grace_stops_a_job_that_runs_too_long(redis: Redis, processes: Processes) -> None:
    job_id = enqueue_run(redis, "endless", SLEEP.format(timeout="2m", seconds=60))
    proc = worker(processes, "worker", "--shutdown-grace", "2")
    wait_until(lambda: state_is(redis, "endless", job_id, "running"), timeout=20)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0
    assert time.monotonic() - started < 15
    assert record(redis, "endless", job_id)["state"] == "failed"


@pytest.mark.usefixtures("app")
def test_busy_worker_survives_a_redis_restart(tmp_path: Path, processes: Processes) -> None:
    """rq quits on a Redis error while it monitors a horse (rq/rq#1119); ours waits it out."""
    from app.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "own-redis", persist=True).start()
    try:
        redis = Redis.from_url(server.url)
        job_id = enqueue_run(redis, "busy", SLEEP.format(timeout="30s", seconds=3))
        proc = processes.start("-m", "jobs.worker", "default", name="worker", extra_env={"REDIS_URL": server.url})
        wait_until(lambda: state_is(redis, "busy", job_id, "running"), timeout=20)
        server.stop()
        time.sleep(4)  # the job ends while Redis is down
        server.start()
        redis = Redis.from_url(server.url)
        wait_until(lambda: state_is(redis, "busy", job_id, "succeeded", "failed"), timeout=30)
        assert proc.poll() is None, processes.output(proc)
        assert "redis is back" in processes.output(proc)
        # The worker still works: a new run succeeds.
        later = enqueue_run(redis, "after", SLEEP.format(timeout="30s", seconds=0))
        wait_until(lambda: state_is(redis, "after", later, "succeeded"), timeout=20)
    finally:
        processes.stop_all()
        server.stop()
