"""What crosses the worker's fork: none of its database connections, and no per-horse rework."""

from __future__ import annotations

import pytest
from flask import Flask
from redis.driver_info import DriverInfo
from rq import Worker
from sqlalchemy import text

from app.extensions import cronwork, db
from jobs.worker import CronworkWorker, build_worker


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """rq's fork replaced by a probe: the connections pooled in this process at each fork."""
    pooled: list[int] = []

    def fork(self: Worker, job: object, queue: object) -> None:
        pooled.append(db.engine.pool.checkedin() + db.engine.pool.checkedout())

    monkeypatch.setattr(Worker, "fork_work_horse", fork)
    return pooled


def fork(worker: CronworkWorker) -> None:
    worker.fork_work_horse(None, worker.queues[0])  # type: ignore[arg-type]  # the probe ignores them


def use_database() -> None:
    """What the worker's own process does when it delivers an alert."""
    db.session.execute(text("select 1"))
    db.session.remove()


def test_no_database_connection_of_the_worker_reaches_a_horse(app: Flask, forks: list[int]) -> None:
    use_database()  # start-up's own connections (readiness probe, migrations)
    worker = build_worker(app, ["default"])
    fork(worker)
    use_database()
    assert db.engine.pool.checkedin() == 1
    fork(worker)
    assert forks == [0, 0]


def test_the_pool_is_left_alone_when_the_worker_used_no_database(app: Flask, forks: list[int]) -> None:
    """The horse then inherits an empty pool: neither side rebuilds it for each job."""
    worker = build_worker(app, ["default"])
    fork(worker)
    pool = db.engine.pool
    fork(worker)
    fork(worker)
    assert db.engine.pool is pool and forks == [0, 0, 0]


def test_horses_inherit_what_each_job_would_otherwise_build(app: Flask) -> None:
    """The run recorder and the client's CLIENT SETINFO metadata are made once, before any fork."""
    worker = build_worker(app, ["default"])
    job_class = worker.job_class
    assert job_class.recorder is not None and job_class.recorder.connection is worker.connection
    assert cronwork.redis(app) is worker.connection
    assert isinstance(worker.connection.connection_pool.connection_kwargs["driver_info"], DriverInfo)
