"""Every outcome of a run lands in its schedule's ledger; final failures alert admins.

The ledger is written BEFORE rq commits the job's status. If the horse dies in between, rq
still sees the job `started`, so abandoned detection later settles both sides; the other
order left the ledger `running` forever (found by bench/chaos).
"""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry

from jobs.alerts import flush_pending, on_final_failure
from jobs.outcomes import FINAL_FAILURES, attempt_of, error_fields
from jobs.runtime import release_overlap_lock
from jobs.worker.appcontext import AppBoundMixin
from jobs.worker.defaults import REDIS_ERRORS
from jobs.worker.logcontext import schedule_name

ABANDONED_ERROR = "AbandonedJobError: worker died mid-job"


class RunRecordingMixin(AppBoundMixin):
    """Records succeeded / skipped / retrying / failed / timed_out / abandoned runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # rq's StartedJobRegistry.cleanup calls the exception handlers with AbandonedJobError
        # for each job whose worker died, then retries or fails it itself.
        self.push_exc_handler(self._on_abandoned)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        if schedule_name(job) is not None:
            # rq keeps the return value only in the private `_result` until it writes the
            # Result (pinned in tests/jobs/test_rq_contract.py).
            if getattr(job, "outcome", None) == "skipped_overlap":
                self.recorder.skipped_overlap(job, job._result)
            else:
                self.recorder.succeeded(job, job._result)  # also ends the failure streak
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        # rq does not retry a job stopped on request (`rq stop`); it tells them apart only by
        # the private `_stopped_job_id` (pinned in the contract test).
        will_retry = job.should_retry and self._stopped_job_id != job.id
        state = None
        if schedule_name(job) is not None:
            state = self.recorder.failed(job, exc_string, will_retry, attempt_of(job))
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if state is not None:
            self.after_failure(job, state, error_fields(exc_string)["error"])

    def _on_abandoned(self, job: Job, exc_type: type, exc_value: BaseException, tb: Any) -> bool:
        """An exception handler: records the runs rq's cleanup finds abandoned."""
        if issubclass(exc_type, AbandonedJobError) and schedule_name(job) is not None:
            will_retry = bool(job.retries_left and job.retries_left > 0)
            state = self.recorder.failed(job, ABANDONED_ERROR, will_retry)
            self.after_failure(job, state, "worker died mid-job (abandoned)")
        return True  # let rq's other handlers run

    def after_failure(self, job: Job, state: str, error: str) -> None:
        """Release a dead run's overlap lock; alert on a final failure."""
        name = schedule_name(job)
        if name is None:
            return
        # A horse that died (killed, OOM, abandoned) never released its overlap lock.
        release_overlap_lock(self.connection, self.keys, name, job.id)
        if state not in FINAL_FAILURES:
            return
        pause_after = int(job.meta.get("pause_after_failures", 0) or 0)
        on_final_failure(self.flask_app, self.connection, self.keys, name, job.id, state, error, pause_after)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        # Alerts that could not be written (database down) are retried here.
        try:
            flush_pending(self.flask_app, self.connection, self.keys)
        except REDIS_ERRORS as exc:
            self.log.warning("pending alerts kept, redis unreachable: %s", exc)
