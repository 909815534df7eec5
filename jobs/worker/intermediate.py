"""Runs rq finds "stuck in its intermediate queue": requeued if they never ran, else dropped.

rq's IntermediateQueue.cleanup fails, by calling handle_job_failure with a message and no
exception type, a job a worker moved out of its queue but never started (the worker died in
between: SIGKILL, OOM, Redis outage). Nothing of it ran: it is owed a run, not a failure.
"""

from __future__ import annotations

from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

# rq gives only this text (rq/intermediate_queue.py; pinned in tests/jobs/test_rq_contract.py).
STUCK_IN_INTERMEDIATE = "Job was stuck in intermediate queue."


class IntermediateQueueMixin(Worker):
    """Keeps rq from failing a run that never started (or already ended) as stuck."""

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        if exc_string == STUCK_IN_INTERMEDIATE and self._settle_stuck(job, queue):
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def _settle_stuck(self, job: Job, queue: Queue) -> bool:
        """Requeue the run if it never ran, drop the entry if stale; True when handled."""
        # rq keys "first seen" by job id, not by execution (rq's own TODO), so a stale entry
        # left by a dequeue cut short by a Redis outage got a run retried later failed as
        # stuck, after it had succeeded (found by bench/chaos).
        self.connection.delete(queue.intermediate_queue.get_first_seen_key(job.id))
        status = job.get_status(refresh=True)
        if status == JobStatus.STARTED:
            return False  # rq's registries disagree; let rq's own handling decide
        if status == JobStatus.QUEUED and self.connection.lpos(queue.key, job.id) is None:
            # Its ledger entry stays `enqueued`, its tick unchanged.
            queue.enqueue_job(job, at_front=True)
            self.log.warning("requeued run %s: its worker died before starting it", job.id)
        else:
            self.log.info("dropped a stale intermediate-queue entry of %s (status %s)", job.id, status)
        return True
