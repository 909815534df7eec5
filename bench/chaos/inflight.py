"""Runs in flight on a worker the harness killed (or that crashed), read from rq and the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis
from rq.registry import StartedJobRegistry

from bench.chaos.schedule import EXPECTED, KEYS, QUEUE
from bench.chaos.timeline import parse_time
from cronwork.ledger import Ledger


@dataclass
class Target:
    """A run in flight on a worker when the harness killed it (or when it exited by itself)."""

    job_id: str
    schedule: str
    tick: int
    started_at: datetime | None
    killed_at: float
    cause: str = "kill"


@dataclass
class Kill:
    """A SIGKILL by the harness, or (cause "crash") a process that exited by itself."""

    at: float
    member: str
    role: str
    children: int = 0
    targets: list[Target] = field(default_factory=list)
    cause: str = "kill"
    parent_only: bool = False  # SIGKILL of the worker's main pid alone, not its children
    survivors: list[int] = field(default_factory=list)  # children alive ORPHAN_GRACE after it
    orphans_gone: float = 0.0  # s until the last child of a parent-only kill was gone


def runs_held_by(conn: Redis, worker_name: str, at: float, cause: str) -> list[Target]:
    """Cronwork runs `worker_name` is executing: `started` in the StartedJobRegistry under its
    name, or `running` on it in the ledger (rq may have committed an end the ledger lacks)."""
    ledger = Ledger(conn, KEYS)
    running = {
        KEYS.run_id(name, r["tick"])
        for name in EXPECTED
        for r in ledger.history(name, 10)
        if r.get("state") == "running" and r.get("worker") == worker_name
    }
    # cleanup=False: a cleanup would handle abandoned jobs itself, without Cronwork's handlers.
    started = set(StartedJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False))
    targets = []
    for job_id in sorted(running | started):
        name, status, began = conn.hmget(f"rq:job:{job_id}", "worker_name", "status", "started_at")
        if name is None or name.decode() != worker_name:
            continue
        if job_id in running or status == b"started":
            schedule, tick = _split_run_id(job_id)
            # rq's started_at, as the abandoned attempt will record it (the horse's differs).
            targets.append(
                Target(job_id, schedule, tick, parse_time(began.decode() if began else None), at, cause)
            )
    return targets


def _split_run_id(job_id: str) -> tuple[str, int]:
    head, _, tick = job_id.rpartition("-")
    return head.removeprefix(f"{KEYS.prefix}-"), int(tick)


def same_start(attempt: dict[str, Any], target: Target) -> bool:
    """Whether a ledger attempt is `target`'s run (same rq start; an unknown start matches)."""
    started = parse_time(attempt.get("started_at"))
    if target.started_at is None or started is None:
        return True
    return abs((started - target.started_at).total_seconds()) < 0.001
