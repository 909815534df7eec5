"""The worker's timings, in one place (rq keeps its own in rq/defaults.py).

Each one replaces an rq default that is too slow for a scheduler; tests/jobs/test_rq_contract.py
pins the rq values they replace, so an rq upgrade that moves them fails loudly.
"""

from __future__ import annotations

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

JOB_MONITORING_INTERVAL = 10  # seconds between heartbeats of a running job (rq: 30)
HEARTBEAT_GRACE = 20  # a job whose heartbeat is this late is abandoned (rq: 60)
MAINTENANCE_INTERVAL = 15  # seconds between registry cleanups (rq: 600)
MAINTENANCE_LOCK_TTL = 2 * MAINTENANCE_INTERVAL  # a cleaning pass takes milliseconds (rq: 899)
# rq:worker:<name> lives this long after the last heartbeat (rq: worker_ttl + 60 = 480 s idle,
# 70 s busy). Heartbeats come every MAINTENANCE_INTERVAL when idle, every second when
# suspended, every JOB_MONITORING_INTERVAL when busy: three can be missed. A dead worker's
# name is free again this soon.
WORKER_KEY_TTL = 3 * MAINTENANCE_INTERVAL
# rq heartbeats the worker key three times per job besides the heartbeat it pipelines with its
# suspension check; a heartbeat this soon after the previous one is skipped (WorkerKeyMixin).
HEARTBEAT_MIN_GAP = 1.0
SHUTDOWN_GRACE = 60.0  # seconds SIGTERM waits for the current job
# Longest wait between two attempts to reach Redis during an outage (rq: 60 s, growing
# from 1 s by x2, BaseWorker.max_connection_wait_time): the worker resumes at most this
# long after Redis returns, whatever the outage length.
OUTAGE_BACKOFF_MAX = 2.0
# Waits between pings while Redis is away: 0.2 s doubling up to OUTAGE_BACKOFF_MAX.
OUTAGE_BACKOFF = ExponentialBackoff(cap=OUTAGE_BACKOFF_MAX, base=0.2)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
