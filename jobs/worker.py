"""`python -m jobs.worker [queues...]`: create the app once, then run a forking RQ worker.

On top of rq's Worker:
- horses never reuse the parent's database connections;
- every outcome lands in the schedule's ledger; final failures alert admins (jobs.alerts);
- a SIGKILLed worker's job is detected as abandoned within about a minute, not rq's ten
  (shorter heartbeat TTL and maintenance interval; the idle dequeue wakes up for it);
- SIGTERM lets the current job finish for up to SHUTDOWN_GRACE seconds, then stops it;
- every log line carries the job id and schedule name.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import pkgutil
import sys
import threading
import time
from types import FrameType
from typing import Any

from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import WorkerStatus

from app import create_app
from app.extensions import db, redis_from_config
from app.readiness import ServiceUnavailable, wait_for_services
from cronwork.keys import Keys
from cronwork.serializer import JOB_SERIALIZER
from jobs.alerts import flush_pending, on_final_failure
from jobs.outcomes import FINAL_FAILURES, RunRecorder, attempt_of, error_fields, schedule_of
from jobs.runtime import EnforcedDeathPenalty, bind_app, release_overlap_lock

log = logging.getLogger("jobs.worker")

JOB_MONITORING_INTERVAL = 10  # seconds between heartbeats of a running job
HEARTBEAT_GRACE = 20  # a job whose heartbeat is this late is abandoned (rq: 60)
MAINTENANCE_INTERVAL = 15  # seconds between registry cleanups (rq: 600)
MAINTENANCE_LOCK_TTL = 2 * MAINTENANCE_INTERVAL  # a cleaning pass takes milliseconds
SHUTDOWN_GRACE = 60.0  # seconds SIGTERM waits for the current job
OUTAGE_BACKOFF_MAX = 5.0
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
# rq's IntermediateQueue.cleanup fails, with this message, a job that a worker moved out of
# its queue but never started (the worker died in between: SIGKILL, OOM, Redis outage).
STUCK_IN_INTERMEDIATE = "Job was stuck in intermediate queue."
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s job_id=%(job_id)s schedule=%(schedule)s %(message)s"


# The job this process is busy with; set around execute_job, so the fork carries it into
# the horse and every line about the job, before and after perform(), is stamped.
_current_run = {"job_id": "-", "schedule": "-"}


class JobContextFilter(logging.Filter):
    """Stamp the current RQ job id and schedule on every record (`-` outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _current_run["job_id"]
        record.schedule = _current_run["schedule"]
        return True


class CronworkQueue(Queue):
    """rq's Queue with a maintenance lock that lives MAINTENANCE_LOCK_TTL, not 899 s.

    A worker that dies holding rq's lock stopped every worker's registry cleaning, and so
    abandoned-job detection, for up to 15 minutes (found by bench/chaos.py).
    """

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=MAINTENANCE_LOCK_TTL))


class CronworkWorker(Worker):
    """A forking worker that records outcomes and finds abandoned jobs quickly."""

    flask_app: Flask
    death_penalty_class = EnforcedDeathPenalty

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)
        self.shutdown_grace = SHUTDOWN_GRACE
        self._grace_timer: threading.Timer | None = None
        self.push_exc_handler(self._on_abandoned)

    def setup(self, app: Flask) -> None:
        self.flask_app = app
        self.keys = Keys(app.config["CRONWORK_PREFIX"])
        self.recorder = RunRecorder(self.connection, self.keys)

    # -- abandoned-job detection, sooner than rq's defaults --------------------------------

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker must wake up to run maintenance, or abandoned jobs wait 405 s.
        return min(super().dequeue_timeout, MAINTENANCE_INTERVAL)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        remaining = (job.timeout or self.job_monitoring_interval) - working_time
        return int(max(min(remaining, self.job_monitoring_interval), 1)) + HEARTBEAT_GRACE

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
            flush_pending(self.flask_app, self.connection, self.keys)
        except REDIS_ERRORS as exc:
            self.log.warning("maintenance skipped, redis unreachable: %s", exc)
            # rq 3.0 declares last_cleaned_at unannotated (= None), so mypy infers None only.
            self.last_cleaned_at = now()  # type: ignore[assignment]  # try again at the next interval

    def _on_abandoned(self, job: Job, exc_type: type, exc_value: BaseException, tb: Any) -> bool:
        """rq calls exception handlers for jobs its registry cleanup finds abandoned."""
        if exc_type.__name__ == "AbandonedJobError":
            will_retry = bool(job.retries_left and job.retries_left > 0)
            state = self.recorder.failed(job, "AbandonedJobError: worker died mid-job", will_retry)
            self._after_failure(job, state, "worker died mid-job (abandoned)")
        return True  # let rq's other handlers run

    # -- outcomes --------------------------------------------------------------------------

    # -- Redis outages ----------------------------------------------------------------------
    # rq's work loop quits on any Redis error raised while it monitors a horse, cleans
    # registries or heartbeats (rq/rq#1119): a Redis restart killed busy workers, and under
    # honcho one exiting process stops them all. These overrides wait Redis out instead.

    def execute_job(self, job: Job, queue: Queue) -> None:
        _current_run.update(job_id=job.id, schedule=schedule_of(job) or "-")
        try:
            try:
                execution = self.prepare_execution(job)
            except REDIS_ERRORS as exc:
                # Not forked yet: the job stays in rq's intermediate queue, whose cleanup
                # moves it on; nothing ran.
                self._wait_out_redis(exc)
                return
            self.fork_work_horse(job, queue)
            self._monitor_through_outages(job, queue, execution)
            self._survive(self.set_state, WorkerStatus.IDLE)
        finally:
            _current_run.update(job_id="-", schedule="-")

    def _monitor_through_outages(self, job: Job, queue: Queue, execution: Execution) -> None:
        while True:
            try:
                self.monitor_work_horse(job, queue, execution)
                return
            except REDIS_ERRORS as exc:
                self._wait_out_redis(exc)
            if self._horse_pid:
                # Still running: heartbeat now (the outage may have eaten most of the TTL),
                # then monitor it again.
                self._survive(self.maintain_heartbeats, job, execution)
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

    def _wait_out_redis(self, exc: BaseException) -> None:
        """Block until Redis answers again (logged once per outage)."""
        self.log.error("redis unreachable (%s): waiting for it, the worker keeps running", exc)
        started, delay = time.monotonic(), 0.2
        while True:
            try:
                self.connection.ping()
                self.log.info("redis is back after %.1fs", time.monotonic() - started)
                return
            except REDIS_ERRORS:
                time.sleep(delay)
                delay = min(delay * 2, OUTAGE_BACKOFF_MAX)

    def _survive(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except REDIS_ERRORS as exc:
            self._wait_out_redis(exc)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
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
            self._wait_out_redis(exc)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # SQLAlchemy's advice for fork: drop the inherited pool without closing the parent's
        # sockets; the horse opens its own connections.
        with self.flask_app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)

    # The ledger is written BEFORE rq commits the job's status. If the horse dies in between,
    # rq still sees the job `started`, so abandoned detection later settles both sides; the
    # other order left the ledger `running` forever (found by bench/chaos.py).

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        if schedule_of(job) is not None:
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
        if exc_string == STUCK_IN_INTERMEDIATE and self._settle_stuck(job, queue):
            return
        will_retry = job.should_retry and self._stopped_job_id != job.id
        state = None
        if schedule_of(job) is not None:
            state = self.recorder.failed(job, exc_string, will_retry, attempt_of(job))
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if state is not None:
            self._after_failure(job, state, error_fields(exc_string)["error"])

    def _settle_stuck(self, job: Job, queue: Queue) -> bool:
        """A job rq found in its intermediate list, not started: requeue it if it never
        ran, drop the entry if it is stale; True when handled (rq must not fail it)."""
        # rq keys "first seen" by job id, not by execution (rq's own TODO), so a stale entry
        # left by a dequeue cut short by a Redis outage got a run retried later failed as
        # stuck, after it had succeeded (found by bench/chaos.py).
        self.connection.delete(queue.intermediate_queue.get_first_seen_key(job.id))
        status = job.get_status(refresh=True)
        if status == JobStatus.STARTED:
            return False  # rq's registries disagree; let rq's own handling decide
        if status == JobStatus.QUEUED and self.connection.lpos(queue.key, job.id) is None:
            # Nothing of this run executed: it is owed a run, not a failure. Its ledger entry
            # stays `enqueued`, its tick unchanged.
            queue.enqueue_job(job, at_front=True)
            self.log.warning("requeued run %s: its worker died before starting it", job.id)
        else:
            self.log.info("dropped a stale intermediate-queue entry of %s (status %s)", job.id, status)
        return True

    def _after_failure(self, job: Job, state: str, error: str) -> None:
        name = schedule_of(job)
        if name is None:
            return
        # A horse that died (killed, OOM, abandoned) never released its overlap lock.
        release_overlap_lock(self.connection, self.keys, name, job.id)
        if state not in FINAL_FAILURES:
            return
        pause_after = int(job.meta.get("pause_after_failures", 0) or 0)
        on_final_failure(self.flask_app, self.connection, self.keys, name, job.id, state, error, pause_after)

    # -- shutdown --------------------------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown; a job still running after the grace is stopped."""
        if self.horse_pid and self._grace_timer is None:
            self.log.info("stopping: waiting up to %.0fs for job to finish", self.shutdown_grace)
            self._grace_timer = threading.Timer(self.shutdown_grace, self._grace_expired)
            self._grace_timer.daemon = True
            self._grace_timer.start()
        super().request_stop(signum, frame)

    def _grace_expired(self) -> None:
        if self.horse_pid:
            self.log.warning("shutdown grace of %.0fs over: stopping the running job", self.shutdown_grace)
            self.kill_horse()


def preload_jobs() -> None:
    """Import every `jobs.*` module once in the parent: horses then import nothing, and a
    broken job module fails the worker at start instead of every run."""
    import jobs

    for module in pkgutil.iter_modules(jobs.__path__, "jobs."):
        importlib.import_module(module.name)


def build_worker(app: Flask, queue_names: list[str], name: str | None = None) -> CronworkWorker:
    """A worker on the app's Redis, with the app-bound Job class on its queues."""
    connection = redis_from_config(app.config)
    # One client for rq and the app: each horse then reconnects once, not twice.
    app.extensions["cronwork_redis"] = connection
    job_class = bind_app(app)
    queues = [
        CronworkQueue(q, connection=connection, job_class=job_class, serializer=JOB_SERIALIZER)
        for q in queue_names
    ]
    worker = CronworkWorker(
        queues,
        connection=connection,
        job_class=job_class,
        queue_class=CronworkQueue,
        serializer=JOB_SERIALIZER,
        name=name,
    )
    worker.setup(app)
    return worker


def configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(JobContextFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__)
    parser.add_argument("queues", nargs="*", default=["default"])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: generated)")
    parser.add_argument("--shutdown-grace", type=float, default=SHUTDOWN_GRACE, metavar="SECONDS")
    args = parser.parse_args(argv)
    configure_logging()

    app = create_app()
    try:
        wait_for_services(app)
    except ServiceUnavailable as exc:
        sys.stderr.write(f"jobs.worker: {exc}\n")
        return 1
    with app.app_context():
        db.engine.dispose()  # the start-up probe's connections stay out of every fork
    preload_jobs()
    worker = build_worker(app, args.queues, name=args.name)
    worker.shutdown_grace = args.shutdown_grace
    # Everything loaded so far is shared with every horse: keep the GC from touching it, so
    # forks stay cheap (fewer copy-on-write pages). Measured in bench/worker.py.
    gc.freeze()
    log.info("worker name=%s queues=%s", worker.name, ",".join(args.queues))
    # with_scheduler: RQ's own scheduler moves delayed retries back to their queues.
    worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
