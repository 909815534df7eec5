"""Every log line carries the RQ job id and schedule name of the run it is about."""

from __future__ import annotations

import logging
from typing import Any

from rq import Queue, Worker
from rq.job import Job

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s job_id=%(job_id)s schedule=%(schedule)s %(message)s"

# The job this process is busy with; set around execute_job, so the fork carries it into
# the horse and every line about the job, before and after perform(), is stamped.
_current_run = {"job_id": "-", "schedule": "-"}


def schedule_name(job: Job) -> str | None:
    """The run's schedule, or None; never raises on a job whose meta is not a dict (refused)."""
    meta: Any = job.meta
    name = meta.get("cronwork_schedule") if isinstance(meta, dict) else None
    return str(name) if name else None


class JobContextFilter(logging.Filter):
    """Stamp the current RQ job id and schedule on every record (`-` outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _current_run["job_id"]
        record.schedule = _current_run["schedule"]
        return True


class LogContextMixin(Worker):
    """Stamps the job on every line logged while the worker handles it.

    Outermost mixin: refusals, outage waits and outcome records are all stamped.
    """

    def execute_job(self, job: Job, queue: Queue) -> None:
        _current_run.update(job_id=job.id, schedule=schedule_name(job) or "-")
        try:
            super().execute_job(job, queue)
        finally:
            _current_run.update(job_id="-", schedule="-")


def configure_logging() -> None:
    """Root logging on stderr with the job stamp on every line."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(JobContextFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
