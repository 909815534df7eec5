"""CronworkWorker: rq's forking Worker composed of single-concern mixins, and how to build it."""

from __future__ import annotations

import importlib
import pkgutil

from flask import Flask
from redis import Redis
from redis.driver_info import DriverInfo
from rq import Worker

from app.extensions import cronwork
from cronwork.connection import redis_from_settings
from cronwork.serializer import JOB_SERIALIZER
from jobs.runtime import EnforcedDeathPenalty, bind_app
from jobs.worker.abandon import FastAbandonMixin, MaintenanceLockQueue
from jobs.worker.intermediate import IntermediateQueueMixin
from jobs.worker.logcontext import LogContextMixin
from jobs.worker.outage import OutageMixin
from jobs.worker.overlapwait import OverlapWaitMixin
from jobs.worker.parentdeath import ParentDeathMixin, WorkerKeyMixin
from jobs.worker.refusal import RefusalMixin, RefusingQueue
from jobs.worker.shutdown import GracefulStopMixin


class CronworkQueue(RefusingQueue, MaintenanceLockQueue):
    """The worker's queues: a short maintenance lock, and unreadable hashes failed, not raised."""


class CronworkWorker(
    LogContextMixin,  # outermost: every line about a job is stamped
    IntermediateQueueMixin,  # before the recording: a never-started run is requeued, not failed
    RefusalMixin,  # fails undecodable or foreign jobs before any fork; records runs below it
    OverlapWaitMixin,
    GracefulStopMixin,
    ParentDeathMixin,
    OutageMixin,  # before WorkerKeyMixin: catches the Redis errors of its heartbeat
    WorkerKeyMixin,
    FastAbandonMixin,
    Worker,
):
    """A forking worker that records outcomes, refuses bad jobs and survives outages and kills.

    The order matters where two mixins override the same rq method; the comments above say
    why. tests/jobs/test_rq_contract.py pins every rq method overridden here.
    """

    death_penalty_class = EnforcedDeathPenalty


def preload_jobs() -> None:
    """Import every `jobs.*` module once in the parent: horses then import nothing, and a
    broken job module fails the worker at start instead of every run."""
    import jobs

    for module in pkgutil.iter_modules(jobs.__path__, "jobs."):
        importlib.import_module(module.name)


def resolve_client_info_once(connection: Redis) -> None:
    """Give the client's pool the library name and version it reports (CLIENT SETINFO),
    resolved once here.

    Without it redis-py resolves them for every new connection by parsing its package
    metadata (importlib.metadata: 0.6 ms warm, 1-2 ms of CPU in a fresh horse), and every
    horse opens a new connection.
    What Redis is told stays the same (pinned in tests/jobs/test_rq_contract.py).
    """
    connection.connection_pool.connection_kwargs.setdefault("driver_info", DriverInfo())


def build_worker(app: Flask, queue_names: list[str], name: str | None = None) -> CronworkWorker:
    """A worker on the app's Redis, with the app-bound Job class on its queues."""
    connection = redis_from_settings(cronwork.settings(app))
    resolve_client_info_once(connection)
    # One client for rq and the app: each horse then reconnects once, not twice.
    cronwork.use_connection(app, connection)
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
