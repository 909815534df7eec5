"""The job format every Cronwork process uses: JSON, never pickle.

RQ's default serializer is pickle, and RQ unpickles a job's meta on every fetch and its
args when anything reads `func_name`: whoever can write to Redis could run code in the
worker, the scheduler and the web app. Every Queue, Worker, registry and Job of Cronwork
goes through `JSONJob`, whose serializer cannot be swapped back to pickle by a caller
(rq's Queue passes its own serializer to every job it creates or fetches).
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job


class JSONSerializer:
    """RQ's serializer protocol over strict JSON (UTF-8); tuples come back as lists."""

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    @staticmethod
    def loads(data: bytes, /) -> Any:
        return json.loads(data)


JOB_SERIALIZER = JSONSerializer


class JSONJob(Job):
    """An RQ job that is always stored and read as JSON, whatever serializer it is handed."""

    def __init__(
        self, id: str | None = None, connection: Redis | None = None, serializer: Any = None
    ) -> None:
        super().__init__(id, connection=connection)
        # Set after rq's __init__, not passed to it: rq's resolve_serializer checks a runtime
        # Protocol with isinstance, ~25 µs a job, a tenth of a 1,000-schedule pass.
        self.serializer = JOB_SERIALIZER


def json_queue(name: str, connection: Redis) -> Queue:
    """An RQ queue whose jobs are JSONJobs."""
    return Queue(name, connection=connection, job_class=JSONJob, serializer=JOB_SERIALIZER)
