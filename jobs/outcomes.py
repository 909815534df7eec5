"""Record what happened to each run, from the worker's view of its RQ job.

An adapter between rq's Job and the run lifecycle of cronwork.runs: it reads the schedule,
tick, times and error of a job and calls the matching RunWriter transition. Jobs without a
Cronwork schedule in their meta (an app's own jobs on the same queue) are left alone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

from redis import Redis
from rq.job import Job

from cronwork.keys import Keys
from cronwork.runs import (
    FINAL_FAILURES,
    Finish,
    Guard,
    RunState,
    RunWriter,
    StartKind,
    WaitKind,
    error_fields,
    job_of_token,
    result_text,
    schedule_of,
    tick_of,
)

log = logging.getLogger(__name__)

__all__ = ["FINAL_FAILURES", "RunRecorder", "classify_failure", "error_fields", "schedule_of"]


def classify_failure(job: Job, exc_string: str) -> RunState:
    """FAILED, TIMED_OUT or ABANDONED, from the failure rq hands over.

    rq hands the worker's failure handler a formatted traceback, not the exception, so the
    exception's type name is matched in it (pinned by tests/jobs/test_rq_contract.py).
    """
    if "JobTimeoutException" in exc_string or "TimeoutSwallowed" in exc_string:
        # Anywhere in the chain: a job that turned its timeout into another error timed out.
        return RunState.TIMED_OUT
    if error_fields(exc_string)["error_type"] == "AbandonedJobError":
        return RunState.ABANDONED
    if "Work-horse terminated unexpectedly" in exc_string and job.started_at and job.timeout:
        # The horse SIGKILLed itself after ignoring its timeout (jobs.runtime._hard_kill).
        elapsed = (datetime.now(UTC) - job.started_at.replace(tzinfo=UTC)).total_seconds()
        if elapsed >= job.timeout:
            return RunState.TIMED_OUT
    return RunState.FAILED


class RunRecorder:
    """Moves a job's run through its lifecycle; every write after `started` is fenced."""

    def __init__(self, connection: Redis, keys: Keys) -> None:
        self.connection = connection
        self.keys = keys
        self.writer = RunWriter(connection, keys)
        self.last = Finish(current=True)

    def started(self, job: Job, overlap_ttl: int = 0, waiter_ttl: int = 0) -> tuple[StartKind, str | None]:
        """A new attempt of the job's run begins: it gets a token (kept on the job object).

        Returns (STARTED, None), (HELD, job id of the run holding the overlap lock),
        (BUFFERED, job id of that run) when `waiter_ttl` lets it wait (its token is kept on the
        job object for `cancel_requested`) or (DONE, the state the run already ended in)."""
        name, tick = schedule_of(job), tick_of(job)
        if name is None or tick is None:
            return StartKind.STARTED, None
        token = f"{job.id}/{uuid4().hex[:12]}"
        job.attempt_token = token  # type: ignore[attr-defined]  # read by the finishing writes
        started = (job.started_at or datetime.now(UTC)).replace(tzinfo=UTC)
        enqueued = job.enqueued_at.replace(tzinfo=UTC) if job.enqueued_at else None
        kind, value = self.writer.started(
            name, tick, token, job.id, job.worker_name or "", started, enqueued, overlap_ttl, waiter_ttl
        )
        if kind is StartKind.STARTED:
            log.info("run schedule=%s job_id=%s state=running attempt=%s", name, job.id, value)
            return kind, None
        if kind is StartKind.DONE:
            log.warning("run schedule=%s job_id=%s already ended %s: not run again", name, job.id, value)
            return kind, str(value)
        holder = job_of_token(value) if isinstance(value, str) else None
        if kind is StartKind.BUFFERED:
            job.overlap_holder = value  # type: ignore[attr-defined]  # read by cancel_requested
            log.info("run schedule=%s job_id=%s state=buffered waiting_for=%s", name, job.id, holder)
        return kind, holder

    def waited(self, job: Job, overlap_ttl: int) -> tuple[WaitKind, str | None]:
        """One look at the overlap lock by the job's buffered attempt: (RUNNING, None) when the
        lock is its own now; else the kind and the job id of the run in the way. On RUNNING the
        job's `started_at` becomes now: the attempt's time (its duration, its timeout) starts
        when it runs, not when it began to wait."""
        name, tick, token = schedule_of(job), tick_of(job), getattr(job, "attempt_token", None)
        if name is None or tick is None or not token:
            return WaitKind.STALE, None
        at = datetime.now(UTC)
        kind, value = self.writer.waited(name, tick, token, at, overlap_ttl)
        if kind is WaitKind.RUNNING:
            job.started_at = at
            log.info("run schedule=%s job_id=%s state=running after waiting", name, job.id)
        return kind, job_of_token(value) if value else None

    def cancel_requested(self, job: Job) -> bool:
        """The job's buffered run (cancel_other) asks the run holding the lock to stop: marks
        that run's record; False when it no longer runs."""
        name, holder = schedule_of(job), getattr(job, "overlap_holder", None)
        if name is None or not holder:
            return False
        return self.writer.cancel_requested(name, holder, job.id, datetime.now(UTC))

    def stopped(self, job: Job, exc_string: str, worker: str | None = None) -> RunState:
        """Record an attempt stopped on request (rq's stop-job): CANCELLED when a newer run of
        its schedule asked for it (cancel_other marked the record before sending the command),
        else a final failure as before (an operator's `rq stop`). Never retried (rq does not
        retry a stopped job)."""
        name, tick = schedule_of(job), tick_of(job)
        by = self.writer.cancel_requested_by(name, tick) if name is not None and tick is not None else None
        if by is None:
            return self.failed(job, exc_string, will_retry=False, worker=worker)
        fields: dict[str, Any] = {**self._ended(job), "result": result_text({"cancelled_by": by})}
        if job.started_at is None:
            fields.pop("duration", None)
        self._finish(job, RunState.CANCELLED, fields, attempt=True, worker=worker)
        return RunState.CANCELLED

    def waiting(self, job: Job) -> bool:
        """Whether the job's run is `buffered` (waiting for the overlap lock), as its record says."""
        name, tick = schedule_of(job), tick_of(job)
        if name is None or tick is None:
            return False
        key = self.keys.run_record(name, tick)
        state, job_id = cast(list[bytes | None], self.connection.hmget(key, "state", "job_id"))
        return state == RunState.BUFFERED.encode() and job_id == job.id.encode()

    def succeeded(self, job: Job, result: Any) -> Finish:
        fields = {**self._ended(job), "result": result_text(result)}
        return self._finish(job, RunState.SUCCEEDED, fields, attempt=True)

    def skipped_overlap(self, job: Job, result: Any) -> Finish:
        fields = {**self._ended(job), "result": result_text(result)}
        return self._finish(job, RunState.SKIPPED_OVERLAP, fields, attempt=False)

    def failed(
        self,
        job: Job,
        exc_string: str,
        will_retry: bool,
        worker: str | None = None,
    ) -> RunState:
        """Record a failure; returns the state written (RETRYING or a final failure).

        `worker`: the name of the worker whose horse ran the attempt, when the failure is
        recorded outside that horse. `self.last` tells whether the write was current and the
        schedule's failure streak after it. The ledger numbers the attempt itself."""
        state = RunState.RETRYING if will_retry else classify_failure(job, exc_string)
        fields: dict[str, Any] = {**self._ended(job), **error_fields(exc_string)}
        if job.started_at is None:
            fields.pop("duration", None)
        self._finish(job, state, fields, attempt=True, worker=worker)
        return state

    def _finish(
        self, job: Job, state: RunState, fields: dict[str, Any], attempt: bool, worker: str | None = None
    ) -> Finish:
        name, tick = schedule_of(job), tick_of(job)
        if name is None or tick is None:
            self.last = Finish(current=True)
            return self.last
        token = getattr(job, "attempt_token", None)
        if token:
            guard, value = Guard.TOKEN, token
        elif worker or job.worker_name:
            guard, value = Guard.OWNER, worker or job.worker_name or ""
        else:
            guard, value = Guard.OPEN, ""
        entry = None
        if attempt:
            started = job.started_at.replace(tzinfo=UTC).isoformat() if job.started_at else None
            entry = {**fields, "started_at": started}
        self.last = self.writer.finished(name, tick, state, guard, value, {"job_id": job.id, **fields}, entry)
        if self.last.current:
            log.info("run schedule=%s job_id=%s state=%s", name, job.id, state)
        elif self.last.ended_as is not None:
            ended = self.last.ended_as
            log.warning("run schedule=%s job_id=%s had ended %s: %s not recorded", name, job.id, ended, state)
        else:
            log.warning(
                "stale attempt schedule=%s job_id=%s: %s not recorded, a newer attempt owns the run",
                name,
                job.id,
                state,
            )
        return self.last

    @staticmethod
    def _ended(job: Job) -> dict[str, Any]:
        ended = datetime.now(UTC)
        fields: dict[str, Any] = {"ended_at": ended.isoformat()}
        if job.started_at:
            fields["duration"] = round((ended - job.started_at.replace(tzinfo=UTC)).total_seconds(), 3)
        return fields
