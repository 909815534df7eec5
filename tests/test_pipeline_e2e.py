"""The whole pipeline with real processes: scheduler → Redis → worker → app context → DB."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis

from app.config import PROJECT_ROOT
from app.extensions import db
from app.models import Heartbeat, Stage
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.serializer import JSONJob
from tests.conftest import Processes, wait_until

pytestmark = pytest.mark.slow

FAST_SCHEDULE = """
[defaults]
timezone = "Asia/Shanghai"
overlap = "allow"
timeout = "30s"

[schedules.health_check]
func = "jobs.system.health_check"
every = "1s"

[schedules.update_stage_status]
func = "jobs.stages.update_stage_status"
every = "1s"
"""


@pytest.fixture
def fast_schedule(tmp_path: Path, process_env: dict[str, str]) -> Path:
    path = tmp_path / "schedule.toml"
    path.write_text(FAST_SCHEDULE)
    process_env["SCHEDULE_FILE"] = str(path)
    return path


def test_scheduler_and_worker_run_jobs_in_app_context(
    app: Flask, redis: Redis, processes: Processes, fast_schedule: Path
) -> None:
    now = datetime.now(UTC)
    db.session.add_all(
        [
            Stage(
                name="due",
                status="pending",
                start_date=now - timedelta(minutes=5),
                end_date=now + timedelta(days=1),
            ),
            Stage(
                name="over",
                status="active",
                start_date=now - timedelta(days=2),
                end_date=now - timedelta(minutes=1),
            ),
            Stage(
                name="later",
                status="pending",
                start_date=now + timedelta(days=1),
                end_date=now + timedelta(days=2),
            ),
        ]
    )
    db.session.commit()

    scheduler = processes.start("-m", "scheduler_boot", name="scheduler")
    worker = processes.start("-m", "jobs.worker", "default", name="worker")

    def stages_moved() -> bool:
        db.session.expire_all()
        states = {s.name: s.status for s in db.session.scalars(db.select(Stage))}
        return states == {"due": "active", "over": "completed", "later": "pending"}

    wait_until(stages_moved, timeout=30)
    beat = wait_until(
        lambda: (db.session.expire_all(), db.session.get(Heartbeat, "health_check"))[1], timeout=15
    )
    assert beat.job_id.startswith("cronwork-health_check-")

    # The job's return value proves it ran inside the Flask app context.
    job = JSONJob.fetch(beat.job_id, connection=redis)
    wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=10)
    assert job.return_value()["app_context"] == "app"

    scheduler.terminate()
    worker.terminate()
    assert scheduler.wait(10) == 0, processes.output(scheduler)
    assert worker.wait(15) == 0, processes.output(worker)
    assert "enqueued schedule=update_stage_status" in processes.output(scheduler)


def test_booting_twice_registers_each_schedule_once(
    redis: Redis, process_env: dict[str, str], fast_schedule: Path
) -> None:
    def boot() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "scheduler_boot", "--sync-only"],
            cwd=PROJECT_ROOT,
            env=process_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    first = boot()
    second = boot()
    assert "2 added" in first
    assert "no changes" in second
    ids = sorted(m.decode() for m in redis.zrange(RQ_SCHEDULER_SET, 0, -1))
    assert ids == ["cronwork-health_check", "cronwork-update_stage_status"]


@pytest.mark.parametrize("command", [["-m", "scheduler_boot"], ["-m", "jobs.worker"]])
def test_processes_fail_fast_on_unreachable_redis(
    command: list[str], process_env: dict[str, str], fast_schedule: Path
) -> None:
    url = "redis://:hunter2@127.0.0.1:1/0"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *command],
        cwd=PROJECT_ROOT,
        env={**process_env, "REDIS_URL": url, "STARTUP_TIMEOUT": "10"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert elapsed < 15
    assert "redis://:***@127.0.0.1:1/0" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_web_fails_fast_on_unreachable_redis(process_env: dict[str, str]) -> None:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    started = time.monotonic()
    done = subprocess.run(
        [gunicorn, "-c", "gunicorn.conf.py", "app:create_app()"],
        cwd=PROJECT_ROOT,
        env={**process_env, "REDIS_URL": "redis://127.0.0.1:1/0", "STARTUP_TIMEOUT": "3", "WEB_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 15
    assert "redis://127.0.0.1:1/0" in done.stderr
