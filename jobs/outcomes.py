"""Record what happened to each run in the schedule's ledger: running, succeeded, failed…

Called from the worker (horse and parent) with the run's RQ job; jobs without a Cronwork
schedule in their meta (an app's own jobs on the same queue) are left alone.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.job import Job

from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.runs import MAX_TEXT, error_fields, schedule_of

log = logging.getLogger(__name__)

FINAL_FAILURES = ("failed", "timed_out", "abandoned")


def attempt_of(job: Job) -> int:
    """1 for the first try, 2 for the first retry, …"""
    total = int(job.meta.get("retries", 0) or 0)
    left = job.retries_left if job.retries_left is not None else total
    return max(total - left, 0) + 1


def classify_failure(job: Job, exc_string: str) -> str:
    """failed, timed_out or abandoned, from the failure text rq hands over."""
    if "JobTimeoutException" in exc_string or "TimeoutSwallowed" in exc_string:
        return "timed_out"
    if "AbandonedJobError" in exc_string:
        return "abandoned"
    if "Work-horse terminated unexpectedly" in exc_string and job.started_at and job.timeout:
        # The horse SIGKILLed itself after ignoring its timeout (jobs.runtime._hard_kill).
        elapsed = (datetime.now(UTC) - job.started_at.replace(tzinfo=UTC)).total_seconds()
        if elapsed >= job.timeout:
            return "timed_out"
    return "failed"


def _truncate(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class RunRecorder:
    """Writes run outcomes into the ledger of the run's schedule."""

    def __init__(self, connection: Redis, keys: Keys) -> None:
        self.connection = connection
        self.keys = keys
        self.ledger = Ledger(connection, keys)

    def _record(self, job: Job, fields: dict[str, Any], attempt: bool = False) -> None:
        """Merge `fields` into the run's record (and append them as an attempt), one round trip."""
        name = schedule_of(job)
        tick = job.meta.get("tick") if job.meta else None
        if name is None or tick is None:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            self.ledger.record(name, int(tick), {"job_id": job.id, **fields}, pipe)
            if attempt:
                started = job.started_at.replace(tzinfo=UTC).isoformat() if job.started_at else None
                self.ledger.record_attempt(name, int(tick), {**fields, "started_at": started}, pipe)
            if fields.get("state") == "succeeded":  # a success ends the failure streak
                pipe.delete(self.keys.failure_streak(name), self.keys.alerted(name))
            pipe.execute()
        log.info("run schedule=%s job_id=%s state=%s", name, job.id, fields.get("state"))

    def running(self, job: Job) -> None:
        started = (job.started_at or datetime.now(UTC)).replace(tzinfo=UTC)
        self._record(
            job,
            {
                "state": "running",
                "started_at": started.isoformat(),
                "attempt": attempt_of(job),
                "worker": job.worker_name or "",
            },
        )

    def succeeded(self, job: Job, result: Any) -> None:
        fields = {
            "state": "succeeded",
            **self._ended(job),
            "result": _truncate(result),
            "attempt": attempt_of(job),
        }
        self._record(job, fields, attempt=True)

    def skipped_overlap(self, job: Job, result: Any) -> None:
        self._record(job, {"state": "skipped_overlap", **self._ended(job), "result": _truncate(result)})

    def failed(self, job: Job, exc_string: str, will_retry: bool, attempt: int | None = None) -> str:
        """Record a failure; returns the state written (retrying or a final failure)."""
        state = "retrying" if will_retry else classify_failure(job, exc_string)
        fields: dict[str, Any] = {"state": state, **self._ended(job), **error_fields(exc_string)}
        fields["attempt"] = attempt or attempt_of(job)
        if job.started_at is None:
            fields.pop("duration", None)
        self._record(job, fields, attempt=True)
        return state

    @staticmethod
    def _ended(job: Job) -> dict[str, Any]:
        ended = datetime.now(UTC)
        fields: dict[str, Any] = {"ended_at": ended.isoformat()}
        if job.started_at:
            fields["duration"] = round((ended - job.started_at.replace(tzinfo=UTC)).total_seconds(), 3)
        return fields
