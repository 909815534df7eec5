"""`python -m jobs.worker [queues...] [--burst] [--name] [--shutdown-grace]`: run a worker.

Creates the app once, waits for its services, preloads every job module, then runs a forking
CronworkWorker with rq's scheduler (it moves delayed retries back to their queues).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from app import create_app
from app.extensions import db
from app.readiness import ServiceUnavailable, wait_for_services
from cronwork.settings import SettingsError
from jobs.worker.build import build_worker, preload_jobs
from jobs.worker.defaults import SHUTDOWN_GRACE
from jobs.worker.logcontext import configure_logging

log = logging.getLogger("jobs.worker")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and work until stopped; 1 when Redis or the database is missing."""
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__)
    parser.add_argument("queues", nargs="*", default=["default"])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: generated)")
    parser.add_argument("--shutdown-grace", type=float, default=SHUTDOWN_GRACE, metavar="SECONDS")
    args = parser.parse_args(argv)
    configure_logging()

    try:
        app = create_app()
    except SettingsError as exc:
        sys.stderr.write(f"jobs.worker: {exc}\n")
        return 2
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
