"""Building the RQ job of one run, shared by the scheduler loop and manual runs."""

from __future__ import annotations

import inspect
import zlib
from datetime import datetime
from functools import cache
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.job import Job
from rq.scripts import _build_hset_args
from rq.utils import import_attribute, now, utcformat

from cronwork.loader import accepts_keyword
from cronwork.runs import Trigger
from cronwork.serializer import JOB_SERIALIZER, JSONJob
from cronwork.spec import ScheduleSpec

RUN_RESULT_TTL = 7 * 24 * 3600
RUN_FAILURE_TTL = 30 * 24 * 3600


@cache
def accepts_scheduled_for(func_path: str) -> bool:
    """Whether the job function takes a `scheduled_for` argument (or **kwargs).

    Read from the function's source when possible, so the scheduler (which needs Redis only)
    never imports job code; imported only when the source cannot tell."""
    known = accepts_keyword(func_path, "scheduled_for")
    if known is not None:
        return known
    func = import_attribute(func_path)
    params = inspect.signature(func).parameters.values()
    return any(p.name == "scheduled_for" or p.kind is p.VAR_KEYWORD for p in params)


def build_run_job(
    connection: Redis,
    spec: ScheduleSpec,
    tick: datetime,
    job_id: str,
    trigger: Trigger,
    job_class: type[Job] = JSONJob,
) -> Job:
    """A fresh RQ job for one occurrence, carrying the schedule's run options.

    rq-scheduler would pass retry/timeout options to the function as kwargs and reuse one
    job for every run; here each run is its own job with its own result and failure.
    """
    retry = Retry(max=spec.retries, interval=list(spec.retry_backoff)) if spec.retries else None
    return job_class.create(
        spec.func,
        args=list(spec.args),
        kwargs=_run_kwargs(spec, tick),
        connection=connection,
        id=job_id,
        timeout=spec.timeout,
        retry=retry,
        result_ttl=RUN_RESULT_TTL,
        failure_ttl=RUN_FAILURE_TTL,
        description=_description(spec, tick),
        meta=_run_meta(spec, tick, trigger),
    )


def _run_kwargs(spec: ScheduleSpec, tick: datetime) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if accepts_scheduled_for(spec.func):
        kwargs["scheduled_for"] = tick.isoformat()
    return kwargs


def _description(spec: ScheduleSpec, tick: datetime) -> str:
    return f"{spec.name} @ {tick.isoformat()}"


def _run_meta(spec: ScheduleSpec, tick: datetime, trigger: Trigger) -> dict[str, Any]:
    return {
        "cronwork_schedule": spec.name,
        "scheduled_for": tick.isoformat(),
        "tick": int(tick.timestamp()),
        "trigger": str(trigger),
        # Run options the worker enforces (jobs.runtime, jobs.worker).
        "overlap": spec.overlap,
        "retries": spec.retries,
        "pause_after_failures": spec.pause_after_failures,
    }


class RunJobHashes:
    """The stored hash of each run job, as rq's own atomic enqueue writes it.

    rq.scripts.save_unique_job writes `_build_hset_args(job)` (the fields of `Job.to_dict()`)
    and pushes the id, in one script; cronwork.dispatch does the same for a whole batch. Making
    an rq Job and its dict costs ~85 µs, most of a 10,000-occurrence pass, so the hash of one
    reference job per (schedule, queue) is made by rq and kept, and each run changes only what
    depends on its tick, exactly as `Job.to_dict` encodes it: `data` (zlib of the serialized
    call), `description`, `meta` and `created_at`. tests/jobs/test_rq_contract.py checks the
    result equals rq's `to_dict` of `build_run_job`, field by field. `enqueued_at` is set by
    the dispatch script to the push time.
    """

    def __init__(self, connection: Redis, queue: Queue) -> None:
        self.connection = connection
        self.queue = queue
        # By spec object (the scheduler keeps one per stored definition), held so its id stays.
        self._bases: dict[tuple[int, str], tuple[ScheduleSpec, dict[str, Any]]] = {}

    def fields(self, spec: ScheduleSpec, tick: datetime, trigger: Trigger) -> list[Any]:
        """Field, value, field, value… of the run job's hash (without `enqueued_at`)."""
        fields = dict(self._base(spec, tick, trigger))
        call = (spec.func, None, list(spec.args), _run_kwargs(spec, tick))
        fields["data"] = zlib.compress(JOB_SERIALIZER.dumps(call))
        fields["description"] = _description(spec, tick)
        fields["meta"] = JOB_SERIALIZER.dumps(_run_meta(spec, tick, trigger))
        fields["created_at"] = utcformat(now())
        return [item for pair in fields.items() for item in pair]

    def _base(self, spec: ScheduleSpec, tick: datetime, trigger: Trigger) -> dict[str, Any]:
        key = (id(spec), str(trigger))
        cached = self._bases.get(key)
        if cached is None or cached[0] is not spec:
            job = build_run_job(self.connection, spec, tick, "reference", trigger)
            self.queue._prepare_for_queue(job)
            args = _build_hset_args(job)
            base = dict(zip(args[::2], args[1::2], strict=True))
            base.pop("enqueued_at", None)
            cached = self._bases[key] = (spec, base)
        return cached[1]
