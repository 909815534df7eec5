"""Failed runs: list them across queues and requeue them (one, all, or one schedule's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis, WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError

from cronwork.jobdata import UndecodableJob, fetch_checked, fetch_many_checked, latest_result_checked
from cronwork.keys import Keys
from cronwork.runs import RunWriter, error_fields, schedule_of, tick_of
from cronwork.serializer import JOB_SERIALIZER, JSONJob, json_queue


class RequeueError(LookupError):
    """The job is unknown or not in a failed registry."""


@dataclass(frozen=True)
class FailedRun:
    """One job in a failed registry."""

    job_id: str
    queue: str
    schedule: str | None
    scheduled_for: str | None
    ended_at: str | None
    error_type: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_failed(connection: Redis, schedule: str | None = None) -> list[FailedRun]:
    """Every failed job of every queue, newest first (optionally one schedule's).

    A job that is not strict JSON (an old pickled one, or anything written to Redis by someone
    else) is listed as error_type "UndecodableJob", "undecodable job data: <why>", never decoded
    further: it belongs to no schedule, so only the unfiltered list shows it.
    """
    runs: list[FailedRun] = []
    for queue in Queue.all(connection=connection, job_class=JSONJob, serializer=JOB_SERIALIZER):
        job_ids = queue.failed_job_registry.get_job_ids()
        for job_id, job in zip(job_ids, fetch_many_checked(connection, job_ids), strict=True):
            try:
                if isinstance(job, UndecodableJob):
                    raise job
                if job is None or (schedule and schedule_of(job) != schedule):
                    continue
                result = latest_result_checked(job)
            except UndecodableJob as exc:
                if schedule is None:
                    runs.append(FailedRun(job_id, queue.name, None, None, None, "UndecodableJob", str(exc)))
                continue
            errors = error_fields(result.exc_string or "" if result else "")
            ended = job.ended_at.replace(tzinfo=UTC).isoformat() if job.ended_at else None
            runs.append(
                FailedRun(
                    job_id=job.id,
                    queue=queue.name,
                    schedule=schedule_of(job),
                    scheduled_for=job.meta.get("scheduled_for"),
                    ended_at=ended,
                    error_type=errors["error_type"],
                    error=errors["error"],
                )
            )
    return sorted(runs, key=lambda r: r.ended_at or "", reverse=True)


def requeue(connection: Redis, keys: Keys, job_id: str) -> FailedRun:
    """Put one failed job back on its queue; it keeps its args, meta and scheduled_for.

    The job leaves the failed registry, enters its queue and its run record turns `enqueued`
    (outcome cleared, `requeued_at` set) in one transaction."""
    try:
        job = fetch_checked(connection, job_id)
    except NoSuchJobError:
        raise RequeueError(f"no job {job_id!r}") from None
    except UndecodableJob as exc:
        # A worker would only refuse it again: delete it (rq-dashboard) once looked at.
        raise RequeueError(f"job {job_id!r} is not requeued: {exc}") from None
    queue = json_queue(job.origin, connection)
    registry = queue.failed_job_registry
    if job_id not in registry:
        raise RequeueError(f"job {job_id!r} is not in the failed registry of queue {job.origin!r}")
    run = next(r for r in list_failed(connection, schedule_of(job)) if r.job_id == job_id)
    name, tick = schedule_of(job), tick_of(job)
    try:
        with connection.pipeline(transaction=True) as pipe:
            # WATCH: a concurrent requeue (ours, rq-dashboard's, `rq requeue`) wins, never both.
            pipe.watch(registry.key)
            if pipe.zscore(registry.key, job_id) is None:
                raise RequeueError(f"job {job_id!r} was requeued meanwhile")
            pipe.multi()
            pipe.zrem(registry.key, job_id)
            job.started_at = job.ended_at = None
            queue.enqueue_job(job, pipeline=pipe)
            if name is not None and tick is not None:
                RunWriter(connection, keys).requeued(pipe, name, tick, datetime.now(UTC))
            pipe.execute()
    except WatchError:
        raise RequeueError(f"job {job_id!r} was requeued meanwhile") from None
    return run


def requeue_all(connection: Redis, keys: Keys, schedule: str | None = None) -> list[FailedRun]:
    """Requeue every failed job (optionally one schedule's) that can run; returns what was
    requeued. Undecodable jobs stay in the failed registry."""
    runs = [run for run in list_failed(connection, schedule) if run.error_type != UndecodableJob.__name__]
    return [requeue(connection, keys, run.job_id) for run in runs]
