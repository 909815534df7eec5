"""APScheduler 3 replica of `python -m bench peers`; runs in `.bench-venv/`, not the project's venv.

    .bench-venv/bin/python -m bench.peer_jobs REDIS_URL SECOND_QUEUE MINUTE_QUEUE

Each replica is a BlockingScheduler on one shared RedisJobStore (the set-up APScheduler 3's
documentation offers for persistence; it has no lock between schedulers sharing a store). Both
replicas add the same two jobs (`replace_existing`), every second and every minute on the
second, with APScheduler's defaults otherwise (misfire grace 1 s, coalesce on: a pass that comes
late finds two run times due and runs only the newest, one instance at a time). A job pushes
an rq job of `bench.probe.noop` with rq's own `Queue.enqueue`, so the push Redis sees is rq's
RPUSH like every other system's. Imports only redis, rq and APScheduler: nothing of the project.

The run time a push was scheduled for: APScheduler 3 does not pass it to the job function, but
its executor logs it (`Running job "..." (scheduled at <run_time>)`, `apscheduler.executors.
default`) in the thread that calls the function, right before the call. A logging filter keeps
that record's run time in a thread-local and `push_job` takes it into the rq job id,
`apscheduler-<epoch>-<hex>`, for the benchmark's skew scenario (bench/peers/intent.py). It
changes nothing of when or whether APScheduler runs the job. Without a run time (the record
not seen, or not on a whole second) the id is `apscheduler-x-<hex>`.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import uuid
from datetime import datetime
from functools import cache
from urllib.parse import urlsplit

from redis import Redis
from rq import Queue

NOOP = "bench.probe.noop"
PUSH = "bench.peer_jobs:push_job"
JOBS_KEY = "peers:apscheduler:jobs"
RUN_TIMES_KEY = "peers:apscheduler:run_times"
EXECUTOR_LOGGER = "apscheduler.executors.default"  # BaseExecutor.start: executors.<alias>
RUNNING = "Running job "  # run_job's record just before it calls the function

_scheduled = threading.local()  # run_time: the run time of the call about to happen here


class RunTimeFilter(logging.Filter):
    """Keeps the scheduled run time of APScheduler's `Running job` record for this thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and record.msg.startswith(RUNNING) and isinstance(args, tuple):
            run_time = args[-1] if args else None
            _scheduled.run_time = run_time if isinstance(run_time, datetime) else None
        return True


def job_id(run_time: datetime | None) -> str:
    """The rq job id of one push: the scheduled run time's epoch in it, when it is a whole second."""
    stamp = run_time.timestamp() if run_time is not None else None
    tick = str(int(stamp)) if stamp is not None and stamp.is_integer() else "x"
    return f"apscheduler-{tick}-{uuid.uuid4().hex}"


@cache
def _connection(url: str) -> Redis:
    return Redis.from_url(url)


def push_job(url: str, queue: str) -> None:
    """Enqueue the no-op rq job on `queue` (what the APScheduler job does at each tick)."""
    run_time = getattr(_scheduled, "run_time", None)
    _scheduled.run_time = None  # never reused by a later call without its own record
    Queue(queue, connection=_connection(url)).enqueue(NOOP, job_id=job_id(run_time))


def main(argv: list[str]) -> int:
    """Run one replica until killed."""
    # Installed in .bench-venv only (never a project dependency): no stubs where mypy runs.
    from apscheduler.jobstores.redis import RedisJobStore  # type: ignore[import-not-found]
    from apscheduler.schedulers.blocking import BlockingScheduler  # type: ignore[import-not-found]
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-not-found]

    if len(argv) != 3:
        sys.stderr.write(__doc__ or "")
        return 2
    url, second_queue, minute_queue = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    executor_log = logging.getLogger(EXECUTOR_LOGGER)
    executor_log.setLevel(logging.INFO)  # the record is made only when INFO is enabled
    # Run as `python -m bench.peer_jobs`, this file is `__main__`, while APScheduler imports PUSH
    # as `bench.peer_jobs`: the filter must fill that module's thread-local, not this copy's.
    shared = importlib.import_module(PUSH.split(":")[0])
    executor_log.addFilter(shared.RunTimeFilter())
    parts = urlsplit(url)
    store = RedisJobStore(
        jobs_key=JOBS_KEY,
        run_times_key=RUN_TIMES_KEY,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(parts.path.lstrip("/") or 0),
    )
    scheduler = BlockingScheduler(jobstores={"default": store}, timezone="UTC")
    for job_id, trigger, queue in (
        ("peers-second", CronTrigger(second="*", timezone="UTC"), second_queue),
        ("peers-minute", CronTrigger(second=0, timezone="UTC"), minute_queue),
    ):
        scheduler.add_job(PUSH, trigger, args=[url, queue], id=job_id, replace_existing=True)
    scheduler.start()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
