"""A long Redis outage: the idle worker resumes within 5 s of Redis's return.

rq's dequeue retries with a backoff that doubles from 1 s up to 60 s
(`BaseWorker.max_connection_wait_time`): after 22 s down it sleeps 8–16 s between attempts,
so a stock worker picks work up many seconds late. Cronwork caps it (jobs/worker/outage.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis import Redis

from app.embedded_redis import EmbeddedRedis
from cronwork.serializer import JSONJob
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import enqueue_run, state_is

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 22  # stock rq would be at 8 s, then 16 s, between attempts
RESUME_WITHIN = 5.0
QUICK = 'func = "jobs.diagnostics.sleep"\ncron = "0 0 1 1 *"\ntimeout = "30s"\nargs = [0]\n'


@pytest.mark.usefixtures("app")
def test_idle_worker_resumes_within_seconds_after_a_long_outage(tmp_path: Path, processes: Processes) -> None:
    server = EmbeddedRedis(tmp_path / "own-redis", persist=True).start()
    try:
        redis = Redis.from_url(server.url)
        proc = processes.start(
            "-m",
            "jobs.worker",
            "default",
            "--name",
            "patient",
            name="worker",
            extra_env={"REDIS_URL": server.url},
        )
        wait_until(lambda: redis.hget("rq:worker:patient", "state") == b"idle", timeout=30)
        server.stop()
        # The outage's length is the input of this test, not a wait for something.
        time.sleep(OUTAGE_SECONDS)
        assert proc.poll() is None, processes.output(proc)
        server.start()  # same port, same data directory (append-only file)

        redis = Redis.from_url(server.url)
        enqueued = datetime.now(UTC)
        job_id = enqueue_run(redis, "after_outage", QUICK)
        wait_until(lambda: state_is(redis, "after_outage", job_id, "succeeded"), timeout=30)
        started = JSONJob.fetch(job_id, connection=redis).started_at
        assert started is not None
        delay = (started.replace(tzinfo=UTC) - enqueued).total_seconds()
        assert delay < RESUME_WITHIN, f"run started {delay:.1f}s after Redis returned"
        assert proc.poll() is None, processes.output(proc)
    finally:
        processes.stop_all()
        server.stop()
