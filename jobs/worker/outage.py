"""Redis outages: the worker waits Redis out, whatever it was doing, and resumes fast.

rq's work loop quits on a Redis error raised while it monitors a horse, cleans registries or
heartbeats (rq/rq#1119): a Redis restart killed busy workers, and under honcho one exiting
process stops them all. And while idle, rq's dequeue retries with a backoff that doubles up
to `max_connection_wait_time` (60 s): after a 75 s outage workers resumed 48 s late.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis.client import Pipeline
from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import WorkerStatus

from jobs.worker.defaults import OUTAGE_BACKOFF, OUTAGE_BACKOFF_MAX, REDIS_ERRORS


class OutageMixin(Worker):
    """Survives Redis outages at every step and resumes within OUTAGE_BACKOFF_MAX of the return."""

    # rq's idle dequeue loop sleeps min(1 s x 2^n, max_connection_wait_time) between attempts
    # (BaseWorker.dequeue_job_and_maintain_ttl); capping the ceiling caps the resume delay.
    max_connection_wait_time = OUTAGE_BACKOFF_MAX

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            execution = self.prepare_execution(job)
        except REDIS_ERRORS as exc:
            # Not forked yet: the job stays in rq's intermediate queue, whose cleanup moves it
            # on; nothing ran.
            self.wait_out_redis(exc)
            return
        self.fork_work_horse(job, queue)
        self._monitor_through_outages(job, queue, execution)
        self.survive(self.set_state, WorkerStatus.IDLE)

    def _monitor_through_outages(self, job: Job, queue: Queue, execution: Execution) -> None:
        while True:
            try:
                self.monitor_work_horse(job, queue, execution)
                return
            except REDIS_ERRORS as exc:
                self.wait_out_redis(exc)
            if self.horse_pid:
                # Still running: heartbeat now (the outage may have eaten most of the TTL),
                # then monitor it again.
                self.survive(self.maintain_heartbeats, job, execution)
                continue
            # The horse ended during the outage, before rq could settle the job.
            if job.get_status() not in (JobStatus.FINISHED, JobStatus.FAILED):
                job.ended_at = now()
                self.handle_job_failure(
                    job,
                    queue=queue,
                    exc_string="Work-horse ended while Redis was unreachable",
                    execution=execution,
                )
            return

    def wait_out_redis(self, exc: BaseException) -> None:
        """Block until Redis answers again (logged once per outage)."""
        self.log.error("redis unreachable (%s): waiting for it, the worker keeps running", exc)
        started, failures = time.monotonic(), 0
        while True:
            try:
                self.connection.ping()
                self.log.info("redis is back after %.1fs", time.monotonic() - started)
                return
            except REDIS_ERRORS:
                time.sleep(OUTAGE_BACKOFF.compute(failures))
                failures += 1

    def survive(self, call: Callable[..., Any], *args: Any) -> None:
        """Run `call`; on a Redis error, wait Redis out instead of raising."""
        try:
            call(*args)
        except REDIS_ERRORS as exc:
            self.wait_out_redis(exc)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        try:
            super().heartbeat(timeout)
        except REDIS_ERRORS as exc:
            self.log.warning("heartbeat skipped, redis unreachable: %s", exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_ERRORS as exc:
            self.wait_out_redis(exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_ERRORS as exc:
            self.log.warning("maintenance skipped, redis unreachable: %s", exc)
            # rq 3.0 declares last_cleaned_at unannotated (= None), so mypy infers None only.
            self.last_cleaned_at = now()  # type: ignore[assignment]  # try again at the next interval
