"""Every outcome of a run lands in its schedule's ledger; final failures alert admins.

AppBoundMixin holds what that takes (the app, its keys, a RunRecorder) and keeps the parent's
database connections out of every horse.

The ledger is written BEFORE rq commits the job's status. If the horse dies in between, rq
still sees the job `started`, so abandoned detection later settles both sides; the other
order left the ledger `running` forever (found by bench/chaos).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from rq import Queue, Worker
from rq.exceptions import AbandonedJobError, InvalidJobOperation
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from sqlalchemy import Engine, event

from app.extensions import cronwork, db
from cronwork.keys import Keys
from cronwork.runs import RunState
from jobs.alerts import flush_pending, on_final_failure
from jobs.outcomes import FINAL_FAILURES, RunRecorder, error_fields
from jobs.worker.defaults import REDIS_ERRORS
from jobs.worker.logcontext import schedule_name

ABANDONED_ERROR = "AbandonedJobError: worker died mid-job"


def retry_without_rerun(job: Job) -> None:
    """Make rq retry, at once, a run whose end the ledger already holds.

    The horse records the end before rq commits the job's status; a horse killed in between
    leaves rq to fail (or retry later) a run that ended, often well. rq's handling after this
    point only retries or fails (it reads `retries_left` after the handlers, pinned in the
    contract test), so one more retry is how rq's status catches up: the retry's start finds
    the run ended (cronwork.runs.START) and commits it without running the job again.
    """
    job.retries_left = max(job.retries_left or 0, 1)
    job.retry_intervals = None


class AppBoundMixin(Worker):
    """Holds the app, and keeps the parent's database connections out of every horse."""

    flask_app: Flask
    keys: Keys
    recorder: RunRecorder
    _engines: list[Engine]
    # Whether this process opened a database connection since its last fork. True until the
    # first fork: whatever start-up opened is released then.
    _db_connected = True

    def setup(self, app: Flask) -> None:
        """Bind the app (build_worker calls this once, before work())."""
        self.flask_app = app
        self.keys = cronwork.keys(app)
        self.recorder = RunRecorder(self.connection, self.keys)
        with app.app_context():
            self._engines = list(db.engines.values())
        for engine in self._engines:
            # A pool event: it survives engine.dispose(), which recreates the pool.
            event.listen(engine, "connect", self._on_db_connect)

    def _on_db_connect(self, dbapi_connection: Any, record: Any) -> None:
        self._db_connected = True

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        # SQLAlchemy's recipe for fork: dispose of the pool right before creating the child, so
        # no pooled connection is shared with it; the horse opens its own. Only when this
        # process opened one since the last fork (it rarely does: alerts, flush_pending), so a
        # horse no longer rebuilds its pool in an app context every job (~1.5 ms of CPU
        # and ~400 copy-on-write faults, measured per horse with getrusage).
        if self._db_connected:
            self._db_connected = False
            for engine in self._engines:
                engine.dispose()
        super().fork_work_horse(job, queue)


class RunRecordingMixin(AppBoundMixin):
    """Records succeeded / skipped / retrying / failed / timed_out / abandoned / cancelled runs.

    Every write after an attempt started is fenced (cronwork.runs): when the ledger refuses
    it because a newer attempt owns the run (an orphaned horse, a retry's predecessor), the
    worker does not commit rq's job status either; it only drops its own execution entry, so
    the newer attempt's status, lock and record stay as they are.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # rq's StartedJobRegistry.cleanup calls the exception handlers with AbandonedJobError
        # for each job whose worker died, then retries or fails it itself.
        self.push_exc_handler(self._on_abandoned)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        if schedule_name(job) is not None and not getattr(job, "ledger_done", False):
            # rq keeps the return value only in the private `_result` until it writes the
            # Result (pinned in tests/jobs/test_rq_contract.py).
            if getattr(job, "outcome", None) == RunState.SKIPPED_OVERLAP:
                finish = self.recorder.skipped_overlap(job, job._result)
            else:
                finish = self.recorder.succeeded(job, job._result)  # also ends the failure streak
            if not finish.current:
                self._drop_stale(job, execution)
                return
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        # rq does not retry a job stopped on request (`rq stop`, cancel_other); it tells them
        # apart only by the private `_stopped_job_id` (pinned in the contract test).
        stopped = self._stopped_job_id == job.id
        will_retry = job.should_retry and not stopped
        state = None
        if schedule_name(job) is not None:
            # In the horse the attempt's token fences the write; in this parent (its horse
            # died) the worker's name does: unless another worker's attempt runs.
            if stopped:
                state = self.recorder.stopped(job, exc_string, worker=self.name)
            else:
                state = self.recorder.failed(job, exc_string, will_retry, worker=self.name)
            finish = self.recorder.last
            if finish.ended_as is not None:
                # The run ended before its horse died: nothing to alert; rq follows the ledger.
                state = None
                if finish.ended_well:
                    retry_without_rerun(job)
            elif not finish.current:
                self._drop_stale(job, execution)
                return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if state is RunState.CANCELLED:
            self._file_as_cancelled(job)
        elif state is not None:
            self.after_failure(job, state, error_fields(exc_string)["error"])

    def _file_as_cancelled(self, job: Job) -> None:
        """rq files a stopped job as failed (status `stopped`, failed registry); a run cancelled
        by a newer one is not a failure: it moves to rq's canceled registry, so requeue-all, the
        failed list and the failed-jobs metric leave it alone."""
        try:
            job.cancel()
        except InvalidJobOperation:
            pass  # already canceled
        except REDIS_ERRORS as exc:
            self.log.warning("cancelled run %s kept in the failed registry, redis down: %s", job.id, exc)

    def _on_abandoned(self, job: Job, exc_type: type, exc_value: BaseException, tb: Any) -> bool:
        """An exception handler: records the runs rq's cleanup finds abandoned."""
        if issubclass(exc_type, AbandonedJobError) and schedule_name(job) is not None:
            will_retry = bool(job.retries_left and job.retries_left > 0)
            state = self.recorder.failed(job, ABANDONED_ERROR, will_retry)
            if self.recorder.last.current:
                self.after_failure(job, state, "worker died mid-job (abandoned)")
            elif self.recorder.last.ended_well:
                retry_without_rerun(job)
        return True  # let rq's other handlers run

    def _drop_stale(self, job: Job, execution: Execution | None) -> None:
        """A newer attempt owns the run: remove only this attempt's execution entry."""
        self.log.warning("stale attempt of %s: rq's job status is left to the newer attempt", job.id)
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()

    def after_failure(self, job: Job, state: str, error: str) -> None:
        """Alert on a final failure (the overlap lock was released with the ledger write)."""
        name = schedule_name(job)
        if name is None or state not in FINAL_FAILURES:
            return
        meta = job.meta if isinstance(job.meta, dict) else {}
        pause_after = int(meta.get("pause_after_failures", 0) or 0)
        on_final_failure(self.flask_app, self.connection, self.keys, name, job.id, state, error, pause_after)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        # Alerts that could not be written (database down, no admin yet) are retried here.
        try:
            flush_pending(self.flask_app)
        except REDIS_ERRORS as exc:
            self.log.warning("pending alerts kept, redis unreachable: %s", exc)
