"""Start-up checks: every process proves Redis and the database answer, or exits loudly.

Seed 002's scheduler hung forever on a missing Redis; here a process retries briefly, then
raises ServiceUnavailable with one message naming the URL (password masked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db, describe_redis, redis_from_config

log = logging.getLogger(__name__)


class ServiceUnavailable(RuntimeError):
    """A backing service did not answer within the start-up timeout."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _retry(what: str, where: str, probe: Callable[[], object], timeout: float) -> None:
    """Call `probe` until it succeeds or `timeout` seconds pass; `where` is already masked."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            probe()
            return
        except (RedisError, SQLAlchemyError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                message = f"cannot reach {what} at {where} after {timeout:.0f}s: {exc}"
                raise ServiceUnavailable(message) from None
            log.warning("waiting for %s at %s: %s", what, where, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def wait_for_redis(app: Flask, timeout: float) -> None:
    """PING Redis (directly or through Sentinel) until it answers."""
    client = redis_from_config(app.config)
    try:
        _retry("Redis", describe_redis(app.config), client.ping, timeout)
    finally:
        client.close()


def wait_for_database(app: Flask, timeout: float) -> None:
    """Run SELECT 1 until the database answers."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]

    def probe() -> None:
        with app.app_context(), db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    _retry("the database", mask_url(url), probe, timeout)


def wait_for_services(app: Flask, timeout: float | None = None) -> None:
    """Both checks, with the app's STARTUP_TIMEOUT unless given."""
    limit = float(app.config["STARTUP_TIMEOUT"] if timeout is None else timeout)
    wait_for_redis(app, limit)
    wait_for_database(app, limit)
