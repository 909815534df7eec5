"""Refused jobs: one that does not decode, or names a function outside `jobs`, never runs.

Every Cronwork queue stores jobs as JSON (cronwork.serializer), yet whoever can write to Redis
can leave anything in a job hash: an old pickled job, garbage, a JSON meta that is a list, a
function such as `os.system`. rq would fork a horse for it, whose first decode then raises
(or worse, runs it), and a hash rq cannot even read (a bad status, timeout or date) raises out
of the dequeue and stops the worker. Here such a job is failed in the parent, before any fork
and any import, with a reason in the failed registry; the worker goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from rq import Queue
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat

from cronwork.jobdata import DECODE_ERRORS, UndecodableJob, fetch_checked
from cronwork.loader import job_path_problem
from jobs.outcomes import error_fields
from jobs.runtime import ForbiddenJobFunction, is_allowed
from jobs.worker.defaults import REDIS_ERRORS
from jobs.worker.logcontext import schedule_name
from jobs.worker.outage import OutageMixin
from jobs.worker.recording import RunRecordingMixin

log = logging.getLogger(__name__)


def decodes(job: Job) -> bool:
    """Whether what rq restored is a strict JSON job: [str, None, list, dict] and a JSON object
    as meta. No round trip: the common case costs the worker nothing (bench/worker.py)."""
    try:
        call = (job.func_name, job.instance, job.args, job.kwargs)
    except DECODE_ERRORS:
        return False
    meta: Any = job.meta
    # rq's Job.restore hides a meta it cannot decode in {"unserialized": <bytes>} (pinned in
    # tests/jobs/test_rq_contract.py); JSON never yields bytes.
    if not isinstance(meta, dict) or isinstance(meta.get("unserialized"), bytes):
        return False
    func, instance, args, kwargs = call
    return isinstance(func, str) and instance is None and isinstance(args, list) and isinstance(kwargs, dict)


def refusal(connection: Redis, job: Job) -> Exception | None:
    """Why `job` must not run, or None. Decodes JSON only: nothing is imported or called.

    A job that does not decode is judged again by cronwork.jobdata, the one reader of hashes
    Cronwork did not write (the scheduler and the failed list use it too), so every process
    refuses the same jobs with the same words."""
    if not decodes(job):
        try:
            fetch_checked(connection, job.id)
        except UndecodableJob as exc:
            return exc
        except NoSuchJobError:
            return None  # deleted since the dequeue: rq's own handling of a vanished job applies
        if not decodes(job):  # jobdata accepts what rq's view rejects (an instance): refuse
            return UndecodableJob(job.id, "data is JSON but not [func_name, None, args, kwargs]")
    if not is_allowed(job.func_name):
        return ForbiddenJobFunction(f"refused: {job_path_problem(job.func_name or '')}")
    return None


def describe(exc: BaseException) -> str:
    """`Type: message`, the last line of a traceback (what rq stores and the ledger parses)."""
    return f"{type(exc).__name__}: {exc}"


class RefusalMixin(RunRecordingMixin, OutageMixin):
    """Fails refused jobs in the worker itself, without forking a horse."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            reason = refusal(self.connection, job)
        except REDIS_ERRORS as exc:
            # Nothing started: the run stays in rq's intermediate queue, whose cleanup requeues
            # it (IntermediateQueueMixin), as when prepare_execution meets the outage.
            self.wait_out_redis(exc)
            return
        if reason is None:
            super().execute_job(job, queue)
        else:
            self.refuse(job, queue, reason)

    def refuse(self, job: Job, queue: Queue, reason: Exception) -> None:
        """Fail `job` for good (no retry: it would be refused again), ledger first."""
        exc_string = describe(reason)
        self.log.error("refused job %s: %s", job.id, exc_string)
        job.ended_at = now()
        state = None
        # Nothing in an undecodable job can be trusted to name its schedule (its ledger, its
        # failure streak, its auto-pause): it shows in the failed list only.
        if not isinstance(reason, UndecodableJob) and schedule_name(job) is not None:
            state = self.recorder.failed(job, exc_string, False)
        with self.connection.pipeline() as pipe:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=exc_string, pipeline=pipe)
            Result.create_failure(
                job, job.failure_ttl, exc_string=exc_string, worker_name=self.name, pipeline=pipe
            )
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            self.increment_failed_job_count(pipe)
            pipe.execute()
        if state is not None:
            self.after_failure(job, state, error_fields(exc_string)["error"])

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Exception as exc:
                # rq's Queue._fetch_dequeued_job tags an error reading the dequeued job's hash
                # with `job_id` and `queue` and re-raises it; the work loop would then quit.
                job_id, queue = getattr(exc, "job_id", None), getattr(exc, "queue", None)
                if not isinstance(job_id, str) or not isinstance(queue, Queue):
                    raise
                self.survive(self._refuse_unreadable, job_id, queue, exc)

    def _refuse_unreadable(self, job_id: str, queue: Queue, exc: Exception) -> None:
        fail_unreadable(queue, job_id, exc, self.name)


def fail_unreadable(queue: Queue, job_id: str, exc: BaseException, worker_name: str = "") -> None:
    """Fail a job whose hash rq cannot read: no Job object exists, so write rq's fields."""
    try:
        fetch_checked(queue.connection, job_id)
    except UndecodableJob as found:
        refused = found  # the words every reader uses
    except NoSuchJobError:
        return  # deleted meanwhile: nothing left to fail
    else:
        refused = UndecodableJob(job_id, f"bad job field ({describe(exc)})")  # rq-only error
    exc_string = describe(refused)
    log.error("refused job %s: %s", job_id, exc_string)
    with queue.connection.pipeline() as pipe:
        ended = utcformat(now())
        pipe.hset(
            Job.key_for(job_id), mapping={"status": "failed", "exc_info": exc_string, "ended_at": ended}
        )
        pipe.zadd(queue.failed_job_registry.key, {job_id: current_timestamp() + DEFAULT_FAILURE_TTL})
        # A bare Job (id only, nothing read) carries the Result, as for any failed job.
        bare = queue.job_class(job_id, connection=queue.connection)
        Result.create_failure(
            bare, DEFAULT_FAILURE_TTL, exc_string=exc_string, worker_name=worker_name, pipeline=pipe
        )
        pipe.lrem(queue.intermediate_queue_key, 1, job_id)
        pipe.execute()


class RefusingQueue(Queue):
    """rq's Queue whose `fetch_job` fails an unreadable hash instead of raising.

    rq's maintenance reads jobs it finds in the intermediate queue with `fetch_job`, which
    skips only a missing hash: one with a bad status or date (planted, or left by a dequeue
    that met a Redis outage before the refusal) raised out of the cleaning, and the worker quit.
    """

    def fetch_job(self, job_id: str) -> Job | None:
        try:
            return super().fetch_job(job_id)
        except DECODE_ERRORS as exc:
            fail_unreadable(self, job_id, exc)
            return None  # rq's cleanup then drops the entry, as for a missing job
