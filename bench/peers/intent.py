"""The tick a system meant a push for, read from what the system itself records (skew scenario).

With a replica's clock running fast, a push can land before its tick by Redis's clock, and
floor(push time) would credit it to the previous tick (a duplicate there, a miss of its own).
So the skew scenario attributes each push to the tick the system says it was for, read from
the same MONITOR stream, before the push:

- Cronwork: the job id, `cronwork-<schedule>-<tick epoch>` (cronwork.keys.Keys.run_id; the
  job's meta `tick` carries the same number). `JobIdTick`.
- rq-scheduler: the job's score in `rq:scheduler:scheduled_jobs`, the time rq-scheduler
  scheduled it for, as last ZADDed before the push (it re-pushes one job id and ZADDs the next
  time right after each push: `to_unix(utcnow()) + interval` or the next cron time, both by
  the pushing replica's clock). `ZsetScoreTick`.
- RQ 3.0 `rq cron`: the cron job's `next_enqueue_time` (by queue) in the replica's own hash
  `rq:cron_scheduler:<name>` (field `cron_jobs`, JSON), as last saved before the push: a cron
  job is pushed when `now() >= next_enqueue_time` and the hash is saved after every pass that
  pushed. The hash is the replica's own, so a push is paired with the hash saved from the same
  connection (the replica's client address, learned from the HSET itself). `CronHashTick`.
- APScheduler 3: it does not pass the scheduled run time to the job function, but its
  executor logs it (`Running job ... (scheduled at <run_time>)`) in the calling thread right
  before the call; bench/peer_jobs.py catches that record with a logging filter and puts the
  run time in the rq job id, `apscheduler-<tick epoch>-<hex>`. `JobIdTick`.

A push none of these explains (no record seen, an unknown id) has no intended tick: analysis.py
then falls back to the nearest tick and the report counts those pushes as flagged.
"""

from __future__ import annotations

import json
import re
from typing import Protocol

from bench.peers.monitor import parse_rq_time

SCHEDULED_JOBS = "rq:scheduler:scheduled_jobs"
CRON_SCHEDULER_PREFIX = "rq:cron_scheduler:"
CRONWORK_ID = re.compile(r"^cronwork-.+-(\d+)$")
APSCHEDULER_ID = re.compile(r"^apscheduler-(\d+)-[0-9a-f]+$")
ZADD_FLAGS = frozenset({"nx", "xx", "gt", "lt", "ch", "incr"})


class Intent(Protocol):
    """Reads the intended tick of each push from the lines before it."""

    name: str  # how the tick is known, for the report

    def wants(self, command: str, rest: bytes) -> bool:
        """Whether a (non-push) line is one `observe` needs."""
        ...

    def observe(self, client: str, args: list[str]) -> None:
        """Take a wanted line: its client and its arguments (the command first)."""
        ...

    def intended(self, queue: str, job_id: str, client: str) -> float | None:
        """The tick a push of `job_id` onto `queue` by `client` was meant for; None if unknown."""
        ...


class JobIdTick:
    """The tick is written into the job id (Cronwork, and the APScheduler replica's ids)."""

    def __init__(self, pattern: re.Pattern[str], name: str) -> None:
        self.pattern = pattern
        self.name = name

    def wants(self, command: str, rest: bytes) -> bool:
        return False

    def observe(self, client: str, args: list[str]) -> None:
        return None

    def intended(self, queue: str, job_id: str, client: str) -> float | None:
        found = self.pattern.search(job_id)
        return float(found.group(1)) if found else None


def zadd_pairs(args: list[str]) -> list[tuple[float, str]]:
    """`(score, member)` pairs of a `ZADD key [flags] score member ...` line's arguments."""
    rest = args[2:]
    while rest and rest[0].lower() in ZADD_FLAGS:
        rest = rest[1:]
    pairs: list[tuple[float, str]] = []
    for score, member in zip(rest[::2], rest[1::2], strict=False):
        try:
            pairs.append((float(score), member))
        except ValueError:
            continue
    return pairs


class ZsetScoreTick:
    """rq-scheduler: the pushed job's last score in its scheduled-jobs set."""

    name = "scheduled_jobs score"

    def __init__(self, key: str = SCHEDULED_JOBS) -> None:
        self.key = key
        self._needle = key.encode()
        self.scores: dict[str, float] = {}

    def wants(self, command: str, rest: bytes) -> bool:
        return command == "zadd" and self._needle in rest

    def observe(self, client: str, args: list[str]) -> None:
        if len(args) > 1 and args[1] == self.key:
            for score, member in zadd_pairs(args):
                self.scores[member] = score

    def intended(self, queue: str, job_id: str, client: str) -> float | None:
        return self.scores.get(job_id)


def cron_next_times(cron_jobs: str) -> dict[str, float]:
    """Queue name → `next_enqueue_time` of an `rq cron` replica's `cron_jobs` field (JSON)."""
    try:
        jobs = json.loads(cron_jobs)
    except ValueError:
        return {}
    found: dict[str, float] = {}
    for job in jobs if isinstance(jobs, list) else []:
        if not isinstance(job, dict):
            continue
        queue, text = job.get("queue_name"), job.get("next_enqueue_time")
        if isinstance(queue, str) and isinstance(text, str) and (at := parse_rq_time(text)) is not None:
            found[queue] = at
    return found


class CronHashTick:
    """`rq cron`: `next_enqueue_time` in the pushing replica's own scheduler hash."""

    name = "rq:cron_scheduler next_enqueue_time"

    def __init__(self) -> None:
        self._needle = CRON_SCHEDULER_PREFIX.encode()
        self.replica_of: dict[str, str] = {}  # client address → replica name
        self.next_times: dict[str, dict[str, float]] = {}  # replica name → queue → next time

    def wants(self, command: str, rest: bytes) -> bool:
        return command in ("hset", "hmset") and self._needle in rest and b"cron_jobs" in rest

    def observe(self, client: str, args: list[str]) -> None:
        if len(args) < 2 or not args[1].startswith(CRON_SCHEDULER_PREFIX):
            return
        name = args[1].removeprefix(CRON_SCHEDULER_PREFIX)
        fields = args[2:]
        for field, value in zip(fields[::2], fields[1::2], strict=False):
            if field == "cron_jobs":
                self.replica_of[client] = name
                self.next_times[name] = cron_next_times(value)

    def intended(self, queue: str, job_id: str, client: str) -> float | None:
        name = self.replica_of.get(client)
        return self.next_times.get(name, {}).get(queue) if name is not None else None
