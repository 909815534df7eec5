"""Operators breaking things, with real processes: two schedulers, SIGKILL, Redis restart."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis

from app.embedded_redis import EmbeddedRedis
from cronwork.keys import Keys
from tests.conftest import Processes, wait_until

pytestmark = pytest.mark.slow

EVERY_SECOND = """
[schedules.health_check]
func = "jobs.system.health_check"
every = "1s"
overlap = "allow"
timeout = "30s"
"""
RUN_DONE = re.compile(r"Job OK \(cronwork-health_check-(\d+)\)")
STARTED = re.compile(r"scheduler name=(\w+) started")


def executed_ticks(processes: Processes, worker: object) -> Counter[int]:
    """How many times each tick ran, from the worker's own log."""
    return Counter(int(t) for t in RUN_DONE.findall(processes.output(worker)))  # type: ignore[arg-type]


def scheduler_name(processes: Processes, proc: object) -> str:
    match = wait_until(lambda: STARTED.search(processes.output(proc)), timeout=20)  # type: ignore[arg-type]
    return match.group(1)  # type: ignore[union-attr]


@pytest.fixture
def every_second(tmp_path: Path, process_env: dict[str, str]) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(EVERY_SECOND)
    process_env["SCHEDULE_FILE"] = str(path)


@pytest.mark.usefixtures("every_second", "app")
def test_two_schedulers_then_sigkill_active_one_exactly_once_per_tick(
    redis: Redis, processes: Processes
) -> None:
    first = processes.start("-m", "scheduler_boot", name="scheduler-a")
    second = processes.start("-m", "scheduler_boot", name="scheduler-b")
    worker = processes.start("-m", "jobs.worker", name="worker")
    names = {scheduler_name(processes, first): first, scheduler_name(processes, second): second}

    time.sleep(15)
    owner = redis.get(Keys().scheduler_lock).decode()
    active, standby = names[owner], next(p for n, p in names.items() if n != owner)
    killed_at = time.time()
    os.kill(active.pid, signal.SIGKILL)
    active.wait()
    # The standby must hold the lock and be enqueuing within 5 s.
    wait_until(lambda: redis.get(Keys().scheduler_lock) not in (None, owner.encode()), timeout=5)
    takeover = time.time() - killed_at
    time.sleep(17)
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(10) == 0
    time.sleep(2)  # let the worker finish what is queued

    ran = executed_ticks(processes, worker)
    duplicates = {t: n for t, n in ran.items() if n > 1}
    assert duplicates == {}
    ticks = sorted(ran)
    missing = sorted(set(range(ticks[0], ticks[-1] + 1)) - set(ticks))
    assert missing == [], f"ticks lost around the takeover ({takeover:.1f}s): {missing}"
    assert len(ticks) >= 30
    assert takeover <= 5


@pytest.mark.usefixtures("app")
def test_scheduler_and_worker_survive_a_redis_restart(
    tmp_path: Path, processes: Processes, process_env: dict[str, str]
) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(EVERY_SECOND)
    server = EmbeddedRedis(tmp_path / "own-redis", persist=True).start()
    env = {"SCHEDULE_FILE": str(path), "REDIS_URL": server.url}
    try:
        scheduler = processes.start("-m", "scheduler_boot", name="scheduler", extra_env=env)
        worker = processes.start("-m", "jobs.worker", name="worker", extra_env=env)
        wait_until(lambda: len(executed_ticks(processes, worker)) >= 3, timeout=30)

        server.stop()  # clean shutdown: AOF keeps the schedule
        time.sleep(4)
        server.start()
        restarted_at = int(time.time())

        wait_until(lambda: any(t > restarted_at + 2 for t in executed_ticks(processes, worker)), timeout=40)
        assert scheduler.poll() is None and worker.poll() is None
        log = processes.output(scheduler)
        assert log.count("redis unreachable") == 1, log  # logged once per outage
        assert "redis is back" in log
    finally:
        processes.stop_all()
        server.stop()
