"""What an attacker (or an older version) with write access to Redis leaves there: pickled jobs
whose args or meta run a shell command when unpickled, garbage bytes, a meta that is a JSON list.

Every Cronwork process reads jobs as JSON only (cronwork.serializer), so none of this may run:
the payload appends the pid of whoever unpickled it to a marker file, and the marker must never
appear. Used by the chaos harness (one plant mid-chaos) and tests/test_hostile_redis.py.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue

from cronwork.keys import RQ_SCHEDULER_SET, job_key
from cronwork.serializer import json_queue

KINDS = ("pickled-args", "pickled-meta", "garbage", "meta-list")
PLACES = ("queue", "failed", "scheduled")
HARMLESS_CALL: list[object] = ["jobs.diagnostics.sleep", None, [0], {}]  # valid JSON job data
RQ_DATE = "%Y-%m-%dT%H:%M:%S.%fZ"  # rq.utils.utcformat


class Touch:
    """Unpickling this runs `echo ran-in-pid=$PPID >> marker` (the `__reduce__` of the incident)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"echo ran-in-pid=$PPID >> {shlex.quote(str(self.marker))}",))


def job_fields(kind: str, marker: Path, origin: str, status: str) -> dict[str, bytes | str]:
    """The hash of one hostile job, with every field rq itself writes well-formed but data/meta."""
    payload = Touch(marker)
    data, meta = json.dumps(HARMLESS_CALL).encode(), b"{}"
    if kind == "pickled-args":
        # rq's pickle format: (func_name, instance, args, kwargs); reading func_name unpickles it.
        data = pickle.dumps(("jobs.diagnostics.sleep", None, (payload,), {}), pickle.HIGHEST_PROTOCOL)
    elif kind == "pickled-meta":
        meta = pickle.dumps({"cronwork_schedule": payload}, pickle.HIGHEST_PROTOCOL)
    elif kind == "garbage":
        data, meta = b"\x00\xffnot a job\x80", b"\xfe\xff{not json"
    elif kind == "meta-list":
        meta = b'["cronwork_schedule", "not", "an", "object"]'
    else:
        raise ValueError(f"unknown hostile kind {kind!r}; one of {', '.join(KINDS)}")
    now = datetime.now(UTC).strftime(RQ_DATE)
    fields: dict[str, bytes | str] = {
        "data": zlib.compress(data),  # rq stores data compressed
        "meta": meta,
        "origin": origin,
        "description": f"hostile {kind}",
        "created_at": now,
        "enqueued_at": now,
        "status": status,
        "timeout": "30",
    }
    if status == "failed":
        fields.update(ended_at=now, exc_info="hostile: planted straight into the failed registry")
    return fields


@dataclass
class Planted:
    """Job ids written, by place."""

    queue: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.queue, *self.failed, *self.scheduled]


def plant(
    conn: Redis,
    marker: Path,
    queue: str,
    tag: str = "",
    kinds: tuple[str, ...] = KINDS,
    places: tuple[str, ...] = PLACES,
) -> Planted:
    """Write every hostile kind into `queue`, its failed registry and rq-scheduler's set (due now).

    Ids are `hostile-<place>-<kind><tag>`: never a Cronwork id, so the scheduler treats the
    scheduled ones as foreign jobs (an app's `enqueue_at`), which go through rq-scheduler.
    """
    planted = Planted()
    target = json_queue(queue, conn)
    now = time.time()
    with conn.pipeline(transaction=True) as pipe:
        for place in places:
            for kind in kinds:
                job_id = f"hostile-{place}-{kind}{tag}"
                status = {"queue": "queued", "failed": "failed", "scheduled": "scheduled"}[place]
                pipe.hset(job_key(job_id), mapping=job_fields(kind, marker, queue, status))  # type: ignore[arg-type]
                if place == "queue":
                    pipe.sadd(Queue.redis_queues_keys, target.key)
                    pipe.rpush(target.key, job_id)
                elif place == "failed":
                    pipe.sadd(Queue.redis_queues_keys, target.key)
                    pipe.zadd(target.failed_job_registry.key, {job_id: now + 3600})
                else:
                    pipe.zadd(RQ_SCHEDULER_SET, {job_id: now - 1})
                getattr(planted, place).append(job_id)
        pipe.execute()
    return planted


def ran(marker: Path) -> str:
    """What the payload wrote (the pids that unpickled it); '' when nothing ran."""
    try:
        return marker.read_text()
    except FileNotFoundError:
        return ""
