"""SIGKILL of the worker's main process only (an OOM killer, a per-PID supervisor).

Its horse and rq's scheduler child must die with it (parent-death signal), the run must end
abandoned in the ledger and the failed registry, and the same `--name` must start again as
soon as `rq:worker:<name>` has expired.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from rq.registry import FailedJobRegistry

from app.config import PROJECT_ROOT
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


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_forked_child_asks_for_sigkill_when_its_parent_dies() -> None:
    done = run_python(
        "import ctypes, os, signal\n"
        "from jobs.worker.parentdeath import arm_parent_death_signal\n"
        "assert arm_parent_death_signal()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sig = ctypes.c_int()\n"
        "    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
        "    os._exit(sig.value)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert done.stdout.strip() == str(int(signal.SIGKILL)), done.stderr


def test_a_child_whose_parent_died_before_prctl_kills_itself() -> None:
    """The race: the parent dies between fork and prctl; the child is reparented and must
    not run on. Simulated by a hook (run first) that makes the recorded parent wrong."""
    done = run_python(
        "import os\n"
        "from jobs.worker import parentdeath\n"
        "os.register_at_fork(after_in_child=lambda: parentdeath._state.update(parent=-1))\n"
        "parentdeath.arm_parent_death_signal()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert done.stdout.strip() == str(-int(signal.SIGKILL)), done.stderr


def test_disarmed_forks_get_no_signal() -> None:
    done = run_python(
        "import ctypes, os\n"
        "from jobs.worker.parentdeath import arm_parent_death_signal, disarm_parent_death_signal\n"
        "arm_parent_death_signal(); disarm_parent_death_signal()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sig = ctypes.c_int()\n"
        "    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)\n"
        "    os._exit(sig.value)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert done.stdout.strip() == "0", done.stderr
