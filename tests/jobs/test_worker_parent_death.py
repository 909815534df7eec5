"""SIGKILL of the worker's main process only (an OOM killer, a per-PID supervisor).

Its horse and rq's scheduler child must die with it (parent-death signal), the run must end
abandoned in the ledger and the failed registry, and the same `--name` must start again as
soon as `rq:worker:<name>` has expired.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis import Redis
from rq.registry import FailedJobRegistry

from jobs.worker import WORKER_KEY_TTL
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import children, enqueue_run, kill9, state_is

pytestmark = pytest.mark.slow

LONG = (
    'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\ntimeout = "5m"\nargs = [240]\noverlap = "allow"\n'
)


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for init to reap it has stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def horse_and_scheduler(worker_pid: int) -> tuple[int, int] | None:
    """The worker's horse (its own process group, rq's setpgrp) and scheduler child."""
    horses, others = [], []
    for pid in children(worker_pid):
        (horses if os.getpgid(pid) == pid else others).append(pid)
    return (horses[0], others[0]) if len(horses) == 1 and len(others) == 1 else None


def test_killing_the_worker_kills_its_children_and_frees_its_name(redis: Redis, processes: Processes) -> None:
    job_id = enqueue_run(redis, "victim", LONG)
    doomed = processes.start("-m", "jobs.worker", "default", "--name", "doomed", name="doomed")
    wait_until(lambda: state_is(redis, "victim", job_id, "running"), timeout=30)
    found = wait_until(lambda: horse_and_scheduler(doomed.pid), timeout=20)
    assert isinstance(found, tuple)
    horse, scheduler = found

    kill9(doomed.pid)  # the main process only, as an OOM killer does
    doomed.wait(10)
    wait_until(lambda: not alive(horse) and not alive(scheduler), timeout=5, interval=0.05)

    # The name is free once the worker's key has expired; nothing re-creates it meanwhile.
    wait_until(lambda: not redis.exists("rq:worker:doomed"), timeout=WORKER_KEY_TTL + 15, interval=0.5)
    again = processes.start("-m", "jobs.worker", "default", "--name", "doomed", name="again")
    wait_until(lambda: redis.hget("rq:worker:doomed", "pid") == str(again.pid).encode(), timeout=30)

    # The new worker's maintenance finds the dead run abandoned (no retries: failed for good).
    wait_until(lambda: state_is(redis, "victim", job_id, "abandoned"), timeout=60, interval=0.5)
    wait_until(lambda: job_id in FailedJobRegistry("default", connection=redis), timeout=10)
    assert again.poll() is None, processes.output(again)
    assert "There exists an active worker" not in processes.output(again)
