"""`python -m jobs.worker [queues...]`: create the app once, then run a forking RQ worker."""

from __future__ import annotations

import argparse
import logging
import sys

from flask import Flask
from rq import Queue, Worker
from rq.job import Job

from app import create_app
from app.extensions import db, make_redis
from app.readiness import ServiceUnavailable, wait_for_services
from jobs.runtime import bind_app

log = logging.getLogger("jobs.worker")


class CronworkWorker(Worker):
    """A forking worker whose horses never reuse the parent's database connections."""

    flask_app: Flask

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # SQLAlchemy's advice for fork: the child drops the inherited pool without closing
        # the parent's sockets, and opens its own connections.
        with self.flask_app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)


def build_worker(app: Flask, queue_names: list[str], name: str | None = None) -> CronworkWorker:
    """A worker on the app's Redis, with the app-bound Job class on its queues."""
    connection = make_redis(app.config["REDIS_URL"])
    job_class = bind_app(app)
    queues = [Queue(q, connection=connection, job_class=job_class) for q in queue_names]
    worker = CronworkWorker(queues, connection=connection, job_class=job_class, name=name)
    worker.flask_app = app
    return worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__)
    parser.add_argument("queues", nargs="*", default=["default"])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: generated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    app = create_app()
    try:
        wait_for_services(app)
    except ServiceUnavailable as exc:
        sys.stderr.write(f"jobs.worker: {exc}\n")
        return 1
    with app.app_context():
        db.engine.dispose()  # the start-up probe's connections stay out of every fork
    worker = build_worker(app, args.queues, name=args.name)
    log.info("worker name=%s queues=%s", worker.name, ",".join(args.queues))
    # with_scheduler: RQ's own scheduler moves delayed retries back to their queues.
    worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
