"""Building the RQ job of one run, shared by the scheduler loop and manual runs."""

from __future__ import annotations

import inspect
from datetime import datetime
from functools import cache
from typing import Any

from redis import Redis
from rq import Retry
from rq.job import Job
from rq.utils import import_attribute

from cronwork.loader import accepts_keyword
from cronwork.runs import Trigger
from cronwork.serializer import JSONJob
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
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if accepts_scheduled_for(spec.func):
        kwargs["scheduled_for"] = tick.isoformat()
    retry = Retry(max=spec.retries, interval=list(spec.retry_backoff)) if spec.retries else None
    return job_class.create(
        spec.func,
        args=list(spec.args),
        kwargs=kwargs,
        connection=connection,
        id=job_id,
        timeout=spec.timeout,
        retry=retry,
        result_ttl=RUN_RESULT_TTL,
        failure_ttl=RUN_FAILURE_TTL,
        description=f"{spec.name} @ {tick.isoformat()}",
        meta={
            "cronwork_schedule": spec.name,
            "scheduled_for": tick.isoformat(),
            "tick": int(tick.timestamp()),
            "trigger": str(trigger),
            # Run options the worker enforces (jobs.runtime, jobs.worker).
            "overlap": spec.overlap,
            "retries": spec.retries,
            "pause_after_failures": spec.pause_after_failures,
        },
    )

