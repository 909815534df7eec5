"""APScheduler 3 replica of `python -m bench peers`; runs in `.bench-venv/`, not the project's venv.

    .bench-venv/bin/python -m bench.peer_jobs REDIS_URL SECOND_QUEUE MINUTE_QUEUE

Each replica is a BlockingScheduler on one shared RedisJobStore (the set-up APScheduler 3's
documentation offers for persistence; it has no lock between schedulers sharing a store). Both
replicas add the same two jobs (`replace_existing`), every second and every minute on the
second, with APScheduler's defaults otherwise (misfire grace 1 s, no coalescing). A job pushes
an rq job of `bench.probe.noop` with rq's own `Queue.enqueue`, so the push Redis sees is rq's
RPUSH like every other system's. Imports only redis, rq and APScheduler: nothing of the project.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from urllib.parse import urlsplit

from redis import Redis
from rq import Queue

NOOP = "bench.probe.noop"
PUSH = "bench.peer_jobs:push_job"
JOBS_KEY = "peers:apscheduler:jobs"
RUN_TIMES_KEY = "peers:apscheduler:run_times"


@cache
def _connection(url: str) -> Redis:
    return Redis.from_url(url)


def push_job(url: str, queue: str) -> None:
    """Enqueue the no-op rq job on `queue` (what the APScheduler job does at each tick)."""
    Queue(queue, connection=_connection(url)).enqueue(NOOP)


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
