"""Start-up checks: every process proves Redis and the database answer, or exits loudly.

Seed 002's scheduler hung forever on a missing Redis; here a process retries briefly, then
raises ServiceUnavailable with one message naming the URL (password masked). The Redis half
lives in cronwork.connection (the scheduler needs it without the app); this adds the database.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import cronwork, db
from cronwork.connection import ServiceUnavailable, mask_url, retry_until_up
from cronwork.connection import wait_for_redis as wait_for_cronwork_redis

__all__ = ["ServiceUnavailable", "mask_url", "wait_for_database", "wait_for_redis", "wait_for_services"]


def wait_for_redis(app: Flask, timeout: float) -> None:
    """PING the app's Redis (directly or through Sentinel) until it answers."""
    wait_for_cronwork_redis(cronwork.settings(app), timeout)


def wait_for_database(app: Flask, timeout: float) -> None:
    """Run SELECT 1 until the database answers."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]

    def probe() -> None:
        with app.app_context(), db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    retry_until_up("the database", mask_url(url), probe, timeout, (SQLAlchemyError, OSError))


def wait_for_services(app: Flask, timeout: float | None = None) -> None:
    """Both checks, with the app's STARTUP_TIMEOUT unless given."""
    limit = cronwork.settings(app).startup_timeout if timeout is None else timeout
    wait_for_redis(app, limit)
    wait_for_database(app, limit)
