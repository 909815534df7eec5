"""Container health probes: `python -m app.probe scheduler|worker` exits 0 when healthy.

- scheduler: some scheduler loop completed a pass within
  cronwork.store.SCHEDULER_HEARTBEAT_MAX_AGE seconds (the loop advances, not just a process
  that exists) — the same limit /healthz applies;
- worker: a worker registered from this host is alive in Redis.

Only the Cronwork settings are read: the probe builds no Flask app (the scheduler container
may have no database settings at all).
"""

from __future__ import annotations

import socket
import sys

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from cronwork import store
from cronwork.connection import redis_from_settings
from cronwork.keys import Keys
from cronwork.settings import CronworkSettings, SettingsError


def scheduler_ok(redis: Redis, keys: Keys) -> bool:
    """Whether some scheduler loop beat recently enough."""
    return store.scheduler_alive(store.scheduler_heartbeat_age(redis, keys))


def worker_ok(redis: Redis) -> bool:
    host = socket.gethostname()
    return any(w.hostname == host for w in Worker.all(connection=redis))


def main(argv: list[str]) -> int:
    if argv not in (["scheduler"], ["worker"]):
        sys.stderr.write("usage: python -m app.probe scheduler|worker\n")
        return 2
    try:
        settings = CronworkSettings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"probe {argv[0]}: {exc}\n")
        return 1
    redis = redis_from_settings(settings)
    try:
        if argv[0] == "scheduler":
            healthy = scheduler_ok(redis, Keys(settings.prefix))
        else:
            healthy = worker_ok(redis)
    except RedisError as exc:
        sys.stderr.write(f"probe {argv[0]}: redis error: {exc}\n")
        return 1
    finally:
        redis.close()
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
