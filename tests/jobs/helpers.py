"""Enqueue runs exactly as the scheduler does, and read what became of them."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis

from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.runjob import build_run_job
from cronwork.serializer import JSONJob, json_queue
from tests.scheduler_boot.helpers import schedule_from

KEYS = Keys()


def enqueue_run(redis: Redis, name: str, body: str, tick: datetime | None = None) -> str:
    """Declare one schedule from TOML `body` and enqueue its run for `tick` (default: now)."""
    tick = (tick or datetime.now(UTC)).replace(microsecond=0)
    text = f"[schedules.{name}]\n{body}\n"
    spec = schedule_from(text, tick - timedelta(days=1)).specs[name]
    job_id = KEYS.run_id(name, int(tick.timestamp()))
    job = build_run_job(redis, spec, tick, job_id, "test")
    json_queue(spec.queue, redis).enqueue_job(job)
    return job_id


def record(redis: Redis, name: str, job_id: str) -> dict[str, Any]:
    """The ledger record of a run (empty dict if none yet)."""
    tick = int(job_id.rsplit("-", 1)[1])
    for entry in Ledger(redis, KEYS).history(name, 500):
        if entry["tick"] == tick:
            return entry
    return {}


def state_is(redis: Redis, name: str, job_id: str, *states: str) -> bool:
    return record(redis, name, job_id).get("state") in states


def rq_status_is(redis: Redis, job_id: str, status: str) -> bool:
    """RQ's own status of a run. The worker writes the ledger *before* rq commits the
    job's status (so a death in between never leaves `running` forever), so tests that
    read both must wait for this one too."""
    return JSONJob.fetch(job_id, connection=redis).get_status() == status


def children(pid: int) -> list[int]:
    """Direct child pids of a process (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def kill9(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
