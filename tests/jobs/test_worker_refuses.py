"""Job hashes nobody should be able to run, written straight into Redis, then a real worker.

Old pickled jobs, garbage, a JSON meta that is not an object, a foreign function and a hash
rq cannot even read: each is failed with its reason, nothing of it runs (the pickle's
`__reduce__` would touch a marker file), and the worker goes on to run a normal job.
"""

from __future__ import annotations

import json
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis import Redis
from rq.registry import FailedJobRegistry

from cronwork.ledger import Ledger
from cronwork.serializer import JSONJob
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import KEYS, enqueue_run, state_is

pytestmark = pytest.mark.slow


class Touch:
    """Unpickling this runs `touch <marker>`: what an attacker's pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def write_job(redis: Redis, job_id: str, data: bytes, meta: bytes, status: str = "queued") -> None:
    """A job hash as rq writes it, pushed on the default queue."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = {
        "data": data,
        "meta": meta,
        "origin": "default",
        "status": status,
        "created_at": stamp,
        "enqueued_at": stamp,
        "description": f"hand-written {job_id}",
        "timeout": 30,
    }
    redis.hset(f"rq:job:{job_id}", mapping=fields)
    redis.sadd("rq:queues", "rq:queue:default")
    redis.rpush("rq:queue:default", job_id)


def call(func: str, *args: object) -> bytes:
    return json.dumps([func, None, list(args), {}]).encode()


def test_undecodable_and_foreign_jobs_are_failed_and_the_worker_goes_on(
    redis: Redis, processes: Processes, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    touch = Touch(marker)
    write_job(
        redis, "pickled", pickle.dumps(("jobs.diagnostics.sleep", None, (touch,), {})), pickle.dumps(touch)
    )
    # Its meta names a schedule, but nothing in an undecodable job is trusted: no ledger entry.
    forged = json.dumps({"cronwork_schedule": "forged", "tick": 1_700_000_000}).encode()
    write_job(redis, "garbage", b"\x00\xff not json at all", forged)
    write_job(redis, "short", b'["jobs.diagnostics.sleep", null]', b"{}")
    write_job(redis, "meta-list", call("jobs.diagnostics.sleep", 0), b"[1, 2]")
    write_job(redis, "foreign", call("os.system", f"touch {marker}"), b"{}")
    # Inside the jobs package, but the worker's own machinery: a worker started in a horse.
    write_job(redis, "machinery", call("jobs.worker.cli.main", ["default"]), b"{}")
    write_job(redis, "bad-status", call("jobs.diagnostics.sleep", 0), b"{}", status="bogus")
    expected = {
        "pickled": "UndecodableJob: undecodable job data: data is a pickle (the format before JSON), never unpickled",
        "garbage": "UndecodableJob: undecodable job data: data is not JSON (JSONDecodeError: ",
        "short": "UndecodableJob: undecodable job data: data is not JSON (ValueError: ",
        "meta-list": "UndecodableJob: undecodable job data: meta is a JSON list, not an object",
        "foreign": "ForbiddenJobFunction: refused: 'os.system' is outside the jobs package",
        "machinery": "ForbiddenJobFunction: refused: 'jobs.worker.cli.main' is in the worker's own modules",
        "bad-status": "UndecodableJob: undecodable job data: bad job field (ValueError: 'bogus' is not a valid JobStatus)",
    }

    proc = processes.start("-m", "jobs.worker", "default", "--name", "gate", name="worker")
    failed = FailedJobRegistry("default", connection=redis)
    wait_until(lambda: set(expected) <= set(failed.get_job_ids()), timeout=30)

    for job_id, reason in expected.items():
        job = JSONJob.fetch(job_id, connection=redis)
        assert job.get_status() == "failed", job_id
        result = job.latest_result()
        assert result is not None and result.exc_string.startswith(reason), (job_id, result)
    assert not redis.llen("rq:queue:default") and not redis.llen("rq:queue:default:intermediate")

    # The worker is still there and runs a normal job; nothing of the refused ones ran.
    later = enqueue_run(redis, "after", 'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\nargs = [0]\n')
    wait_until(lambda: state_is(redis, "after", later, "succeeded"), timeout=30)
    assert proc.poll() is None, processes.output(proc)
    assert not marker.exists()
    assert Ledger(redis, KEYS).history("forged", 10) == []


def test_an_unreadable_hash_in_the_intermediate_queue_does_not_stop_maintenance(
    redis: Redis, processes: Processes
) -> None:
    """rq's cleanup reads it with Queue.fetch_job, which only skips a missing hash."""
    write_job(redis, "stranded", call("jobs.diagnostics.sleep", 0), b"{}", status="bogus")
    redis.lmove("rq:queue:default", "rq:queue:default:intermediate")
    proc = processes.start("-m", "jobs.worker", "default", name="worker")
    failed = FailedJobRegistry("default", connection=redis)
    wait_until(lambda: "stranded" in failed.get_job_ids(), timeout=30)
    assert not redis.llen("rq:queue:default:intermediate")
    later = enqueue_run(redis, "after", 'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\nargs = [0]\n')
    wait_until(lambda: state_is(redis, "after", later, "succeeded"), timeout=30)
    assert proc.poll() is None, processes.output(proc)
