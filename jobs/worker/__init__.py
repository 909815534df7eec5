"""The Cronwork worker: rq's forking Worker made of small mixins, one concern each.

On top of rq's Worker (module: what and why):
- logcontext: every log line carries the job id and schedule name;
- refusal: a job that does not decode (old pickle, garbage, meta not a JSON object) or names a
  function outside `jobs` is failed before any fork, with its reason; the worker goes on;
- recording: every outcome lands in the schedule's ledger; final failures alert
  admins (jobs.alerts); a run stopped by a newer one (cancel_other) is recorded cancelled and
  filed under rq's canceled registry; horses never reuse the parent's database connections;
- intermediate: a run dequeued by a worker that died before starting it is requeued;
- abandon: a SIGKILLed worker's job is found abandoned within about a minute, not rq's ten;
- overlapwait: a run waiting for its schedule's overlap lock (buffer_one, cancel_other) is not
  killed by rq's monitor for the time it waited;
- parentdeath: the horse and rq's scheduler child die with the worker's main process, and a
  dead worker's name is free again WORKER_KEY_TTL after its last heartbeat;
- outage: Redis outages are waited out; work resumes within 2 s of Redis's return;
- shutdown: SIGTERM lets the current job finish for up to SHUTDOWN_GRACE, then stops it;
- cli: `python -m jobs.worker [queues] [--burst] [--name] [--shutdown-grace]`.
tests/jobs/test_rq_contract.py pins every rq behaviour these rely on.
"""

from __future__ import annotations

from jobs.worker.build import CronworkQueue, CronworkWorker, build_worker, preload_jobs
from jobs.worker.cli import main
from jobs.worker.defaults import (
    HEARTBEAT_GRACE,
    JOB_MONITORING_INTERVAL,
    MAINTENANCE_INTERVAL,
    OUTAGE_BACKOFF_MAX,
    SHUTDOWN_GRACE,
    WORKER_KEY_TTL,
)
from jobs.worker.logcontext import JobContextFilter, configure_logging

__all__ = [
    "HEARTBEAT_GRACE",
    "JOB_MONITORING_INTERVAL",
    "MAINTENANCE_INTERVAL",
    "OUTAGE_BACKOFF_MAX",
    "SHUTDOWN_GRACE",
    "WORKER_KEY_TTL",
    "CronworkQueue",
    "CronworkWorker",
    "JobContextFilter",
    "build_worker",
    "configure_logging",
    "main",
    "preload_jobs",
]
