"""Reading RQ job hashes that anyone with Redis access may have written: strict JSON, or a named refusal.

`JSONJob` guarantees nothing is ever unpickled, but a hash written by an older Cronwork (pickle),
by an attacker, or by a bug still fails to decode, and each part fails differently in rq 3.0:
`Job.restore` raises on a bad date or status, swallows a bad meta into `{"unserialized": ...}`,
`func_name` raises DeserializationError, `latest_result()` raises on a bad result stream, and a
meta that is JSON but not an object breaks every `job.meta.get(...)` (rq-scheduler's
`enqueue_job` among them). Every reader of jobs it did not write itself (the scheduler's
foreign jobs, the failed list, rq-dashboard) goes through here so they all refuse the same
things with the same words.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from redis import Redis
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.results import Result

from cronwork.keys import job_key
from cronwork.serializer import JOB_SERIALIZER, JSONJob

UNDECODABLE = "undecodable job data"
PICKLE_MARK = b"\x80"  # first byte of every pickle of protocol 2 or later (rq used the highest)

# What decoding a hostile hash can raise in rq 3.0 (dates, ints, enums, JSON, base64, zlib, a
# deeply nested JSON hitting the recursion limit). Redis errors are not here: an outage is not
# bad data and must reach the callers' outage handling.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    DeserializationError,
    ValueError,  # JSONDecodeError, UnicodeDecodeError, binascii.Error, bad dates and ints
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    zlib.error,
)


class UndecodableJob(ValueError):
    """A job hash that is not a Cronwork JSON job: it is never run, requeued or unpickled."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"{UNDECODABLE}: {reason}")
        self.job_id = job_id
        self.reason = reason


def _why(part: str, raw: bytes | None, exc: BaseException | None = None) -> str:
    """A short reason naming the part that failed, and saying so when it is a pickle."""
    if raw is not None and raw.startswith(PICKLE_MARK):
        return f"{part} is a pickle (the format before JSON), never unpickled"
    cause = exc.__cause__ if isinstance(exc, DeserializationError) and exc.__cause__ else exc
    detail = f"{type(cause).__name__}: {cause}"[:200] if cause is not None else "not JSON"
    return f"{part} is not JSON ({detail})"


def restore_checked(job_id: str, raw: dict[Any, Any], connection: Redis) -> JSONJob:
    """A JSONJob from its raw hash; UndecodableJob unless its fields, data and meta are valid JSON."""
    job = JSONJob(job_id, connection=connection)
    try:
        job.restore(raw)
    except NoSuchJobError:  # a hash without `data`
        raise UndecodableJob(job_id, "no job data in the hash") from None
    except DECODE_ERRORS as exc:
        raise UndecodableJob(job_id, f"bad job field ({type(exc).__name__}: {exc})"[:240]) from None
    try:
        func_name, args, kwargs = job.func_name, job.args, job.kwargs  # decodes `data`
    except DECODE_ERRORS as exc:
        raise UndecodableJob(job_id, _why("data", job.data, exc)) from None
    if not isinstance(func_name, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise UndecodableJob(job_id, "data is JSON but not [func_name, instance, args, kwargs]")
    # Decoded again here: rq's restore hides an unreadable meta in {"unserialized": ...}.
    raw_meta: bytes | None = raw.get(b"meta")
    try:
        meta = JOB_SERIALIZER.loads(raw_meta) if raw_meta else {}
    except DECODE_ERRORS as exc:
        raise UndecodableJob(job_id, _why("meta", raw_meta, exc)) from None
    if not isinstance(meta, dict):
        raise UndecodableJob(job_id, f"meta is a JSON {type(meta).__name__}, not an object")
    return job


def fetch_checked(connection: Redis, job_id: str) -> JSONJob:
    """Fetch one job: NoSuchJobError when absent, UndecodableJob when it is not strict JSON."""
    raw = connection.hgetall(job_key(job_id))
    if not raw:
        raise NoSuchJobError(f"no such job: {job_id}")
    return restore_checked(job_id, raw, connection)


def fetch_many_checked(connection: Redis, job_ids: Iterable[str]) -> list[JSONJob | UndecodableJob | None]:
    """Fetch jobs in one round trip: each a job, its UndecodableJob, or None when absent."""
    ids = list(job_ids)
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(job_key(job_id))
        raws = pipe.execute()
    found: list[JSONJob | UndecodableJob | None] = []
    for job_id, raw in zip(ids, raws, strict=True):
        if not raw:
            found.append(None)
            continue
        try:
            found.append(restore_checked(job_id, raw, connection))
        except UndecodableJob as exc:
            found.append(exc)
    return found


def latest_result_checked(job: JSONJob) -> Result | None:
    """The job's latest result; UndecodableJob when its stream entry is not what rq wrote."""
    try:
        return job.latest_result()
    except DECODE_ERRORS as exc:
        raise UndecodableJob(job.id, f"result is not readable ({type(exc).__name__})") from None
