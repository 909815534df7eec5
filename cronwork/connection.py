"""The Redis client every Cronwork process uses, and the start-up wait for it.

Moved out of the Flask app (issue 10): the scheduler process makes its client from
CronworkSettings alone, without building the app or touching the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

from cronwork.settings import CronworkSettings, mask_url

log = logging.getLogger(__name__)

# Short socket timeouts: a Redis that is not there must fail fast, never hang.
REDIS_SOCKET_TIMEOUT = 5.0
REDIS_CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 30
# The wait between two start-up probes: 0.2 s doubling up to 2 s (redis-py's backoff, the one
# every retry loop of Cronwork uses).
STARTUP_BACKOFF = ExponentialBackoff(cap=2.0, base=0.2)




class ServiceUnavailable(RuntimeError):
    """A backing service did not answer within the start-up timeout."""


def make_redis(url: str) -> Redis:
    """A Redis client for `url`; connects lazily on first command (bytes replies)."""
    return Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )


def redis_from_settings(settings: CronworkSettings) -> Redis:
    """The client the settings ask for: through Sentinel when sentinels are set (password
    and db still come from the URL), else straight from the URL. Opens no connection."""
    if not settings.redis_sentinels:
        return make_redis(settings.redis_url)
    parts = urlsplit(settings.redis_url)
    db_index = int(parts.path.lstrip("/") or 0)
    timeouts = {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT}
    sentinel = Sentinel(list(settings.redis_sentinels), **timeouts)
    # A client that asks the sentinels for the current master on every (re)connection, so a
    # failover is a reconnect, not an outage.
    return sentinel.master_for(
        settings.redis_sentinel_master, password=parts.password, db=db_index, **timeouts
    )


def describe_redis(settings: CronworkSettings) -> str:
    """Where Redis is, for messages (password masked)."""
    if settings.redis_sentinels:
        nodes = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"sentinel master {settings.redis_sentinel_master!r} via {nodes}"
    return mask_url(settings.redis_url)


def retry_until_up(
    what: str,
    where: str,
    probe: Callable[[], object],
    timeout: float,
    errors: tuple[type[BaseException], ...] = (RedisError, OSError),
    permanent: Callable[[BaseException], bool] = lambda exc: False,
) -> None:
    """Call `probe` until it succeeds or `timeout` seconds pass; `where` is already masked.

    Raises ServiceUnavailable with one message naming the service and where it was looked for
    (seed 002's scheduler hung for ever on a missing Redis); at once when `permanent` says no
    wait can fix the error (a file that cannot be opened, a wrong password).
    """
    deadline = time.monotonic() + timeout
    failures = 0
    while True:
        try:
            probe()
            return
        except errors as exc:
            if permanent(exc):
                raise ServiceUnavailable(f"cannot use {what} at {where}: {exc}") from None
            delay = STARTUP_BACKOFF.compute(failures)
            if time.monotonic() + delay > deadline:
                message = f"cannot reach {what} at {where} after {timeout:.0f}s: {exc}"
                raise ServiceUnavailable(message) from None
            log.warning("waiting for %s at %s: %s", what, where, exc)
            time.sleep(delay)
            failures += 1


def wait_for_redis(settings: CronworkSettings, timeout: float | None = None) -> None:
    """PING Redis (directly or through Sentinel) until it answers, with a fresh client."""
    client = redis_from_settings(settings)
    limit = settings.startup_timeout if timeout is None else timeout
    try:
        retry_until_up("Redis", describe_redis(settings), client.ping, limit)
    finally:
        client.close()
