"""Two worker processes running the same domain jobs at once: no duplicate warning, no double booking."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis import Redis
from rq import Worker
from rq.job import Job
from sqlalchemy import func, insert, select

from app.extensions import db
from app.models import (
    Notification,
    NotificationKind,
    Rental,
    RentalStatus,
    ShipmentEvent,
    ShipmentEventKind,
    Task,
    TaskStatus,
    User,
)
from cronwork.serializer import json_queue
from tests.conftest import Processes, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.both_databases]

N_TASKS = 60_000  # enough that the two warning runs overlap
N_LATE = N_TASKS // 2
N_RENTALS = 300


def seed(now: datetime) -> None:
    db.session.add_all(User(username=f"u{i}", email=f"u{i}@x") for i in range(3))
    db.session.flush()
    window = timedelta(hours=100)
    db.session.execute(
        insert(Task),
        [
            {
                "title": f"task {i}",
                "handler_id": 1 + i % 3,
                "status": TaskStatus.PROCESSING,
                "progress": 10,
                # Half are late (85–99 % of the time used), half on track (30 %).
                "expected_start": now - window * ((85 + i % 15) / 100 if i % 2 else 0.3),
                "expected_end": now - window * ((85 + i % 15) / 100 if i % 2 else 0.3) + window,
            }
            for i in range(N_TASKS)
        ],
    )
    db.session.execute(
        insert(Rental),
        [
            {"item_name": f"item {i}", "customer": "c", "ship_at": now - timedelta(seconds=i)}
            for i in range(N_RENTALS)
        ],
    )
    db.session.commit()


def overlap(a: Job, b: Job) -> float:
    """Seconds during which both jobs were running."""
    assert a.started_at and a.ended_at and b.started_at and b.ended_at
    return (min(a.ended_at, b.ended_at) - max(a.started_at, b.started_at)).total_seconds()


def test_two_workers_run_warnings_and_shipments_at_the_same_time(
    app: Flask, redis: Redis, processes: Processes
) -> None:
    seed(datetime.now(UTC))
    workers: list[subprocess.Popen[bytes]] = [
        processes.start("-m", "jobs.worker", "default", "--name", f"w{i}", name=f"worker{i}") for i in (1, 2)
    ]
    # Both workers idle and listening before anything is queued: they dequeue in the same instant.
    wait_until(lambda: Worker.count(connection=redis) == 2, timeout=30)
    queue = json_queue("default", redis)
    jobs = [
        queue.enqueue(f"jobs.{path}", job_timeout=120)
        for path in (
            "tasks.check_task_warnings",
            "tasks.check_task_warnings",
            "shipments.process_scheduled_shipments",
            "shipments.process_scheduled_shipments",
        )
    ]
    wait_until(lambda: all(j.get_status(refresh=True) in ("finished", "failed") for j in jobs), timeout=120)
    for worker in workers:
        worker.terminate()
        assert worker.wait(30) == 0, processes.output(worker)
    for job in jobs:
        job.refresh()
        assert job.get_status() == "finished", job.latest_result().exc_string
    warn_a, warn_b, ship_a, ship_b = (j.return_value() for j in jobs)

    # Warnings: each late task warned exactly once, between the two runs.
    assert warn_a["notified"] + warn_b["notified"] == N_LATE
    assert warn_a["late"] == warn_b["late"] == N_LATE
    db.session.expire_all()
    titles = db.session.scalars(
        select(Notification.title).where(Notification.kind == NotificationKind.TASK_WARNING)
    ).all()
    assert len(titles) == len(set(titles)) == N_LATE
    assert len(redis.keys("warning_sent:*")) == N_LATE

    # Shipments: every rental booked exactly once and shipped; skips are the other run's claims.
    assert ship_a["success"] + ship_b["success"] == N_RENTALS
    assert ship_a["failed"] == ship_b["failed"] == 0
    assert ship_a["skipped"] + ship_b["skipped"] == ship_a["total"] + ship_b["total"] - N_RENTALS
    doubles = db.session.scalar(
        select(func.count()).select_from(
            select(ShipmentEvent.rental_id)
            .where(ShipmentEvent.kind == ShipmentEventKind.CARRIER_BOOKING)
            .group_by(ShipmentEvent.rental_id)
            .having(func.count() > 1)
            .subquery()
        )
    )
    assert doubles == 0
    assert db.session.scalar(select(func.count()).select_from(ShipmentEvent)) == 2 * N_RENTALS
    assert set(db.session.scalars(select(Rental.status))) == {RentalStatus.SHIPPED}

    # And the runs did overlap: the two workers really competed.
    overlaps = [overlap(jobs[0], jobs[1]), overlap(jobs[2], jobs[3])]
    assert overlaps[0] > 0 and overlaps[1] > 0, f"runs did not overlap: {overlaps} s"
