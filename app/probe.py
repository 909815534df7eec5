"""Container health probes: `python -m app.probe scheduler|worker` exits 0 when healthy.

- scheduler: some scheduler loop completed a pass within MAX_AGE seconds (the loop
  advances, not just a process that exists);
- worker: a worker registered from this host is alive in Redis.
"""

from __future__ import annotations

import socket
import sys
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from app import create_app
from app.extensions import redis_from_config
from cronwork.keys import Keys

MAX_AGE = 30.0


def scheduler_ok(redis: Redis, prefix: str) -> bool:
    beats = [float(v) for v in redis.hvals(Keys(prefix).scheduler_heartbeat)]
    return bool(beats) and time.time() - max(beats) <= MAX_AGE


def worker_ok(redis: Redis) -> bool:
    host = socket.gethostname()
    return any(w.hostname == host for w in Worker.all(connection=redis))


def main(argv: list[str]) -> int:
    if argv not in (["scheduler"], ["worker"]):
        sys.stderr.write("usage: python -m app.probe scheduler|worker\n")
        return 2
    app = create_app()
    try:
        redis = redis_from_config(app.config)
        if argv[0] == "scheduler":
            healthy = scheduler_ok(redis, app.config["CRONWORK_PREFIX"])
        else:
            healthy = worker_ok(redis)
    except RedisError as exc:
        sys.stderr.write(f"probe {argv[0]}: redis error: {exc}\n")
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
