"""Redis through Sentinel, for real: a failover while the scheduler and a worker run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis
from redis.sentinel import MasterNotFoundError, Sentinel

from app.embedded_redis import find_redis_server, free_port
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from tests.conftest import Processes, wait_until

pytestmark = pytest.mark.slow

SCHEDULE = """
[schedules.beat]
func = "jobs.diagnostics.record_run"
every = "1s"
overlap = "allow"
timeout = "30s"
args = ["sentinel:runs"]
"""


def start_redis(tmp: Path, name: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    folder = tmp / name
    folder.mkdir()
    args = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    with (folder / "log").open("wb") as log:
        proc = subprocess.Popen([*args, *extra], stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: _pings(port), timeout=10)
    return proc, port


def start_sentinel(tmp: Path, master_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel failover-timeout mymaster 5000\n"
    )
    with (tmp / "sentinel.log").open("wb") as log:
        proc = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: _pings(port), timeout=10)
    return proc, port


def _pings(port: int) -> bool:
    try:
        return bool(Redis(port=port, socket_connect_timeout=0.2).ping())
    except OSError:
        return False
    except Exception:  # noqa: BLE001 - redis ConnectionError while starting
        return False


@pytest.mark.usefixtures("app")
def test_scheduler_and_worker_carry_on_through_a_failover(
    tmp_path: Path, processes: Processes, process_env: dict[str, str]
) -> None:
    master, master_port = start_redis(tmp_path, "master")
    replica, replica_port = start_redis(tmp_path, "replica", "--replicaof", "127.0.0.1", str(master_port))
    sentinel, sentinel_port = start_sentinel(tmp_path, master_port)
    try:
        (tmp_path / "schedule.toml").write_text(SCHEDULE)
        env = {
            "REDIS_URL": "redis://unused/0",
            "REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}",
            "REDIS_SENTINEL_MASTER": "mymaster",
            "SCHEDULE_FILE": str(tmp_path / "schedule.toml"),
        }
        scheduler = processes.start("-m", "scheduler_boot", name="scheduler", extra_env=env)
        worker = processes.start("-m", "jobs.worker", name="worker", extra_env=env)
        watcher = Sentinel([("127.0.0.1", sentinel_port)], socket_timeout=1)

        def runs() -> int:
            return int(watcher.master_for("mymaster", socket_timeout=1).llen("sentinel:runs"))

        wait_until(lambda: runs() >= 3, timeout=30)
        os.kill(master.pid, signal.SIGKILL)  # the master dies; the sentinel promotes the replica
        master.wait()
        def promoted() -> bool:
            try:
                return watcher.discover_master("mymaster")[1] == replica_port
            except MasterNotFoundError:  # the sentinel has not finished the failover yet
                return False

        wait_until(promoted, timeout=30, interval=0.5)
        failed_over = time.time()

        new_master = Redis(port=replica_port)
        ledger = Ledger(new_master, Keys())

        def ran_after_failover() -> bool:
            done = [r for r in ledger.history("beat", 50) if r.get("state") == "succeeded"]
            return sum(r["tick"] > failed_over + 1 for r in done) >= 3

        wait_until(ran_after_failover, timeout=40, interval=0.5)
        assert scheduler.poll() is None, processes.output(scheduler)
        assert worker.poll() is None, processes.output(worker)
    finally:
        processes.stop_all()
        for proc in (sentinel, replica, master):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
