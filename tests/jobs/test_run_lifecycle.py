"""A run's record through retries and requeues, with real worker processes.

Whichever tool puts a failed run back on its queue (Cronwork's API/CLI, `rq requeue`, rq's
own registry as rq-dashboard calls it), the next attempt is numbered after the ones before,
`requeued_at` is set and a tick that fails again counts once in the failure streak.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from redis import Redis

from app.services.failed import requeue
from cronwork.ledger import Ledger
from cronwork.runs import Guard, RunState, RunWriter, StartKind
from cronwork.serializer import JSONJob, json_queue
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import KEYS, enqueue_run, record, rq_status_is, state_is

pytestmark = pytest.mark.slow

DOOMED = 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\ntimeout = "10s"'


def burst(processes: Processes, name: str) -> None:
    proc = processes.start("-m", "jobs.worker", "default", "--burst", name=name)
    assert proc.wait(60) == 0, processes.output(proc)


def run_cli(processes: Processes, name: str, *args: str) -> None:
    proc = processes.start(*args, name=name)
    assert proc.wait(60) == 0, processes.output(proc)


def by_service(redis: Redis, processes: Processes, job_id: str) -> None:
    requeue(redis, KEYS, job_id)


def by_flask_cli(redis: Redis, processes: Processes, job_id: str) -> None:
    run_cli(processes, "flask-cli", "-m", "flask", "--app", "app", "failed", "requeue", job_id)


def by_rq_cli(redis: Redis, processes: Processes, job_id: str) -> None:
    url = redis.get_connection_kwargs()
    rq_url = f"redis://{url['host']}:{url['port']}/0"
    serializer = "rq.serializers.JSONSerializer"  # reads Cronwork's JSON jobs
    run_cli(processes, "rq-cli", "-m", "rq.cli", "requeue", "-u", rq_url, "--queue", "default", "-S", serializer, job_id)


def by_rq_registry(redis: Redis, processes: Processes, job_id: str) -> None:
    # What rq-dashboard's requeue button calls (rq.job.requeue_job → FailedJobRegistry.requeue).
    json_queue("default", redis).failed_job_registry.requeue(job_id)


@pytest.mark.parametrize("requeue_with", [by_service, by_flask_cli, by_rq_cli, by_rq_registry])
def test_requeue_numbers_the_attempt_and_counts_the_tick_once(
    redis: Redis, processes: Processes, requeue_with: Callable[[Redis, Processes, str], None]
) -> None:
    job_id = enqueue_run(redis, "doomed", DOOMED)
    burst(processes, "first")
    wait_until(lambda: rq_status_is(redis, job_id, "failed"), timeout=10)
    assert record(redis, "doomed", job_id)["state"] == "failed"
    assert redis.get(KEYS.failure_streak("doomed")) == b"1"

    requeue_with(redis, processes, job_id)
    burst(processes, "again")
    wait_until(lambda: rq_status_is(redis, job_id, "failed"), timeout=10)
    rec = record(redis, "doomed", job_id)
    assert rec["state"] == "failed" and rec["attempt"] == 2 and rec.get("requeued_at"), rec
    assert redis.get(KEYS.failure_streak("doomed")) == b"1"  # one tick, one failure in the streak
    attempts = Ledger(redis, KEYS).attempts("doomed", rec["tick"])
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "failed")]


def test_fail_retry_succeed_shows_the_success_without_the_old_error(redis: Redis, processes: Processes) -> None:
    body = (
        'func = "jobs.diagnostics.fail_times"\ncron = "0 0 1 1 *"\ntimeout = "10s"\nretries = 1\n'
        'retry_backoff = ["1s"]\nkwargs = { key = "calls:flaky", times = 1 }'
    )
    job_id = enqueue_run(redis, "flaky", body)
    proc = processes.start("-m", "jobs.worker", "default", name="worker")
    wait_until(lambda: state_is(redis, "flaky", job_id, "succeeded"), timeout=40)
    rec = record(redis, "flaky", job_id)
    assert rec["attempt"] == 2 and "error" not in rec and "error_type" not in rec, rec
    assert redis.get(KEYS.failure_streak("flaky")) is None
    assert proc.poll() is None


def test_a_stale_attempt_commits_neither_its_outcome_nor_rqs_status(redis: Redis, processes: Processes) -> None:
    body = 'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\ntimeout = "30s"\noverlap = "skip"\nargs = [4]'
    job_id = enqueue_run(redis, "exclusive", body)
    proc = processes.start("-m", "jobs.worker", "default", "--name", "worker-a", name="worker-a")
    wait_until(lambda: state_is(redis, "exclusive", job_id, "running"), timeout=20)
    tick = record(redis, "exclusive", job_id)["tick"]
    # What an abandonment and a retry elsewhere would write while worker-a's horse still runs
    # (an orphan whose parent-death signal failed): the run now belongs to a newer attempt.
    runs, now = RunWriter(redis, KEYS), datetime.now(UTC)
    assert runs.finished("exclusive", tick, RunState.RETRYING, Guard.OWNER, "worker-a", {}, {}).current
    assert runs.started("exclusive", tick, "newer", job_id, "worker-b", now, now, 60) == (StartKind.STARTED, 2)

    wait_until(lambda: "stale attempt" in processes.output(proc), timeout=20)
    rec = record(redis, "exclusive", job_id)
    assert rec["state"] == "running" and rec["token"] == "newer" and rec["worker"] == "worker-b", rec
    assert redis.get(KEYS.overlap_lock("exclusive")) == b"newer"
    assert JSONJob.fetch(job_id, connection=redis).get_status() == "started"  # not `finished`
    assert job_id not in json_queue("default", redis).finished_job_registry
    assert proc.poll() is None
