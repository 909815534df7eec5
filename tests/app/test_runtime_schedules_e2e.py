"""A runtime schedule with the real scheduler and worker: it fires and runs, survives a sync of
the file and a scheduler restart, and stops firing once deleted (its ledger stays)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app.config import PROJECT_ROOT
from cronwork.ledger import Ledger
from tests.app.conftest import KEYS, bearer
from tests.conftest import Processes, wait_until

pytestmark = pytest.mark.slow

# A declared every-second schedule beside the runtime one: its ticks prove the scheduler kept
# passing after the delete, so "the runtime one fired no more" is waited for, never slept on.
FILE = """
[defaults]
timezone = "Asia/Shanghai"

[schedules.pulse]
func = "jobs.system.health_check"
every = "1s"
overlap = "allow"
timeout = "30s"
"""
RUNTIME = {
    "name": "rt",
    "func": "jobs.system.health_check",
    "every": "1s",
    "overlap": "allow",
    "timeout": "30s",
}


def succeeded_ticks(redis: Redis, name: str) -> list[int]:
    return sorted(r["tick"] for r in Ledger(redis, KEYS).history(name, 500) if r.get("state") == "succeeded")


def newest_tick(redis: Redis, name: str) -> int:
    records = Ledger(redis, KEYS).history(name, 1)
    return int(records[0]["tick"]) if records else 0


def redis_now(redis: Redis) -> int:
    return int(redis.time()[0])


def test_a_runtime_schedule_fires_survives_sync_and_restart_and_stops_when_deleted(
    client: FlaskClient,
    redis: Redis,
    processes: Processes,
    process_env: dict[str, str],
    schedule_file: Path,
) -> None:
    schedule_file.write_text(FILE)
    process_env["SCHEDULE_FILE"] = str(schedule_file)
    scheduler = processes.start("-m", "scheduler_boot", name="scheduler")
    processes.start("-m", "jobs.worker", "default", name="worker")

    response = client.post("/api/schedules", json=RUNTIME, headers=bearer())
    assert response.status_code == 201, response.get_json()
    wait_until(lambda: len(succeeded_ticks(redis, "rt")) >= 2, timeout=30)

    synced = subprocess.run(
        [sys.executable, "-m", "scheduler_boot", "--sync-only"],
        cwd=PROJECT_ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "no changes (1 schedules unchanged, 1 runtime left alone)" in synced.stdout, synced.stdout
    after_sync = redis_now(redis)
    wait_until(lambda: any(t > after_sync for t in succeeded_ticks(redis, "rt")), timeout=15)

    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(10) == 0, processes.output(scheduler)
    restarted = redis_now(redis)
    scheduler = processes.start("-m", "scheduler_boot", name="scheduler-again")
    wait_until(lambda: any(t > restarted for t in succeeded_ticks(redis, "rt")), timeout=20)
    assert "1 runtime left alone" in processes.output(scheduler)

    assert client.delete("/api/schedules/rt", headers=bearer()).status_code == 204
    deleted = redis_now(redis)
    wait_until(lambda: newest_tick(redis, "pulse") >= deleted + 2, timeout=15)
    assert newest_tick(redis, "rt") <= deleted  # a tick pushed before the delete may still run; none after
    history = client.get("/api/schedules/rt/history", headers=bearer())
    assert history.status_code == 200 and len(history.get_json()["runs"]) >= 3
