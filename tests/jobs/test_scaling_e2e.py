"""Scaling out: several named workers, a queue per workload, each run where it belongs."""

from __future__ import annotations

import pytest
from redis import Redis

from tests.conftest import Processes, wait_until
from tests.jobs.helpers import enqueue_run, record

pytestmark = pytest.mark.slow

QUICK = 'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\ntimeout = "10s"\noverlap = "allow"\nargs = [0]\n'
HEAVY = QUICK.replace("args = [0]", 'args = [1]\nqueue = "heavy"')


def test_heavy_queue_has_its_own_workers(redis: Redis, processes: Processes) -> None:
    quick = [enqueue_run(redis, f"quick{i}", QUICK) for i in range(4)]
    heavy = [enqueue_run(redis, f"heavy{i}", HEAVY) for i in range(3)]
    processes.start("-m", "jobs.worker", "default", "--name", "host-a-default", name="a")
    processes.start("-m", "jobs.worker", "heavy", "--name", "host-b-heavy-1", name="b1")
    processes.start("-m", "jobs.worker", "heavy", "--name", "host-b-heavy-2", name="b2")

    def all_done() -> bool:
        runs = [record(redis, f"quick{i}", j) for i, j in enumerate(quick)]
        runs += [record(redis, f"heavy{i}", j) for i, j in enumerate(heavy)]
        return all(r.get("state") == "succeeded" for r in runs)

    wait_until(all_done, timeout=60, interval=0.3)
    assert {record(redis, f"quick{i}", j)["worker"] for i, j in enumerate(quick)} == {"host-a-default"}
    heavy_workers = {record(redis, f"heavy{i}", j)["worker"] for i, j in enumerate(heavy)}
    assert heavy_workers <= {"host-b-heavy-1", "host-b-heavy-2"} and heavy_workers
