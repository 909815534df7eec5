"""An attacker with write access to Redis plants pickled payloads (a `__reduce__` that writes a
marker file), garbage and a meta that is a list into a queue, a failed registry and rq-scheduler's
set: nothing runs in any process (web, scheduler, worker) and every process keeps working."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq_scheduler import Scheduler

from bench.chaos.hostile import KINDS, plant, ran
from cronwork.jobdata import UNDECODABLE, UndecodableJob, fetch_checked, fetch_many_checked
from cronwork.keys import RQ_SCHEDULER_SET, Keys, job_key
from cronwork.serializer import JSONJob, json_queue
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import enqueue_run, record
from tests.scheduler_boot.test_ha_e2e import EVERY_SECOND

REASONS = {
    "pickled-args": "data is a pickle (the format before JSON), never unpickled",
    "pickled-meta": "meta is a pickle (the format before JSON), never unpickled",
    "garbage": "data is not JSON",
    "meta-list": "meta is a JSON list, not an object",
}


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where the payload writes if anything ever unpickles it."""
    return tmp_path / "PWNED"


def test_every_kind_is_refused_by_name_and_nothing_runs(redis_url: str, marker: Path) -> None:
    redis = Redis.from_url(redis_url)
    planted = plant(redis, marker, "default", places=("failed",))
    for job_id, kind in zip(planted.failed, KINDS, strict=True):
        with pytest.raises(UndecodableJob) as refused:
            fetch_checked(redis, job_id)
        assert str(refused.value).startswith(f"{UNDECODABLE}: {REASONS[kind]}")
    found = fetch_many_checked(redis, [*planted.failed, "absent"])
    assert [type(f).__name__ for f in found] == ["UndecodableJob"] * len(KINDS) + ["NoneType"]
    with pytest.raises(NoSuchJobError):
        fetch_checked(redis, "absent")
    assert ran(marker) == ""


def test_a_json_job_still_decodes(redis: Redis) -> None:
    job = json_queue("default", redis).enqueue("jobs.diagnostics.sleep", 0, meta={"a": 1})
    assert fetch_checked(redis, job.id).meta == {"a": 1}


# -- the scheduler: a real `python -m scheduler_boot` ------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.usefixtures("app")
def test_scheduler_leaves_hostile_foreign_jobs_alone_and_keeps_firing(
    redis: Redis, processes: Processes, process_env: dict[str, str], tmp_path: Path, marker: Path
) -> None:
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(EVERY_SECOND)
    process_env["SCHEDULE_FILE"] = str(schedule)
    # Planted before it starts: a meta that is a list used to make it exit at every start.
    before = plant(redis, marker, "default", places=("scheduled",))
    scheduler = processes.start("-m", "scheduler_boot", name="scheduler")
    queue = json_queue("default", redis)
    wait_until(lambda: len(queue.job_ids) >= 2, timeout=30)
    during = plant(redis, marker, "default", tag="-late", places=("scheduled",))
    wait_until(
        lambda: all(f"job_id={j} " in processes.output(scheduler) for j in during.scheduled), timeout=10
    )

    fired = len(queue.job_ids)
    busy_from, cpu_from = time.monotonic(), cpu_seconds(scheduler.pid)
    wait_until(lambda: len(queue.job_ids) >= fired + 3, timeout=15)
    cpu = (cpu_seconds(scheduler.pid) - cpu_from) / (time.monotonic() - busy_from)
    assert scheduler.poll() is None, processes.output(scheduler)
    # A parked job is not due: no pass picks it up again, the loop sleeps as usual (a spin is ~1.0).
    assert cpu < 0.3, f"scheduler used {cpu:.2f} CPU while hostile jobs were in its set"

    log = processes.output(scheduler)
    now = time.time()
    for job_id in [*before.scheduled, *during.scheduled]:
        assert len(re.findall(rf"foreign scheduled job_id={re.escape(job_id)} ", log)) == 1, log
        assert redis.exists(job_key(job_id)), f"{job_id} was deleted"
        assert (redis.zscore(RQ_SCHEDULER_SET, job_id) or 0) > now + 3000, f"{job_id} is still due"
        assert job_id not in queue.job_ids
    assert f"{UNDECODABLE}: meta is a JSON list, not an object" in log
    assert all(j.startswith(Keys().prefix) for j in queue.job_ids)
    assert ran(marker) == ""


@pytest.mark.slow
@pytest.mark.usefixtures("app")
def test_scheduler_still_enqueues_an_apps_json_one_off_and_a_worker_runs_it(
    redis: Redis, processes: Processes, process_env: dict[str, str], tmp_path: Path
) -> None:
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(EVERY_SECOND)
    process_env["SCHEDULE_FILE"] = str(schedule)
    # As the README tells an app to schedule its own one-offs.
    when = datetime.now(UTC) - timedelta(seconds=1)
    Scheduler(connection=redis, job_class=JSONJob).enqueue_at(
        when, "jobs.diagnostics.sleep", 0, job_id="app-one-off"
    )
    scheduler = processes.start("-m", "scheduler_boot", name="scheduler")
    wait_until(lambda: "app-one-off" in json_queue("default", redis).job_ids, timeout=30)
    assert redis.zscore(RQ_SCHEDULER_SET, "app-one-off") is None
    scheduler.terminate()
    worker = processes.start("-m", "jobs.worker", "default", "--burst", name="worker")
    assert worker.wait(90) == 0, processes.output(worker)
    job = JSONJob.fetch("app-one-off", connection=redis)
    assert job.get_status() == "finished" and job.return_value() == {"slept": 0}


# -- the worker: a real `python -m jobs.worker --burst` ---------------------------------------


@pytest.mark.slow
def test_worker_runs_nothing_hostile_and_keeps_working(
    app: Flask, redis: Redis, processes: Processes, marker: Path
) -> None:
    planted = plant(redis, marker, "default", places=("queue",))
    good = enqueue_run(redis, "good", 'func = "jobs.system.health_check"\nevery = "1h"\ntimeout = "30s"')
    worker = processes.start("-m", "jobs.worker", "default", "--burst", name="worker")
    code = worker.wait(90)
    output = processes.output(worker)
    assert ran(marker) == "", output
    assert code == 0, output
    assert record(redis, "good", good).get("state") == "succeeded", output
    queue = json_queue("default", redis)
    assert queue.job_ids == []
    # Refused as failed, with the reason (the worker owner's side of this change).
    failed = set(queue.failed_job_registry.get_job_ids())
    assert set(planted.queue) <= failed, output
