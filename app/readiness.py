"""Start-up checks: every process proves Redis and the database answer, or exits loudly.

Seed 002's scheduler hung forever on a missing Redis; here a process retries briefly, then
raises ServiceUnavailable with one message naming the URL (password masked). The Redis half
lives in cronwork.connection (the scheduler needs it without the app); this adds the database.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from app.extensions import cronwork, db
from cronwork.connection import ServiceUnavailable, mask_url, retry_until_up
from cronwork.connection import wait_for_redis as wait_for_cronwork_redis

__all__ = [
    "ServiceUnavailable",
    "database_error",
    "describe_database",
    "mask_url",
    "wait_for_database",
    "wait_for_redis",
    "wait_for_services",
]

# PostgreSQL SQLSTATE classes no retry can fix: 28 invalid authorization (wrong password or
# user), 3D invalid catalog name (no such database).
PERMANENT_SQLSTATE_CLASSES = ("28", "3D")


def wait_for_redis(app: Flask, timeout: float) -> None:
    """PING the app's Redis (directly or through Sentinel) until it answers."""
    wait_for_cronwork_redis(cronwork.settings(app), timeout)


def describe_database(app: Flask) -> str:
    """Where the database is, for messages (password masked)."""
    return mask_url(str(app.config["SQLALCHEMY_DATABASE_URI"]))


def database_error(exc: BaseException) -> str:
    """The driver's own error without SQLAlchemy's SQL text and help link: one line."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(f"{type(cause).__name__}: {cause}".split())


def database_url_problem(url: str) -> str | None:
    """What makes `url` unusable whatever the wait: a SQLite file whose directory does not
    exist (a URL that does not parse or has no driver is a SettingsError of app.config)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            return f"the directory {folder} does not exist"
    return None


def permanent_database_error(exc: BaseException) -> bool:
    """True for a failure that waiting cannot fix.

    SQLite has no server that could come up later: a file it cannot open stays unopenable.
    A server's refusal is permanent when its SQLSTATE says so (bad credentials, no such
    database); a refused or timed-out connection is not.
    """
    if not isinstance(exc, OperationalError) or exc.orig is None:
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES


class DatabaseRefused(Exception):
    """The database's answer in one line, and whether waiting could change it."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def wait_for_database(app: Flask, timeout: float) -> None:
    """Run SELECT 1 until the database answers; a permanent problem fails at once, in one line
    naming the URL (password masked)."""
    url = str(app.config["SQLALCHEMY_DATABASE_URI"])
    where = mask_url(url)
    problem = database_url_problem(url)
    if problem is not None:
        raise ServiceUnavailable(f"cannot use the database at {where}: {problem}")

    def probe() -> None:
        try:
            with app.app_context(), db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise DatabaseRefused(database_error(exc), permanent_database_error(exc)) from exc

    retry_until_up(
        "the database",
        where,
        probe,
        timeout,
        (DatabaseRefused, OSError),
        permanent=lambda exc: isinstance(exc, DatabaseRefused) and exc.permanent,
    )


def wait_for_services(app: Flask, timeout: float | None = None) -> None:
    """Both checks, with the app's STARTUP_TIMEOUT unless given."""
    limit = cronwork.settings(app).startup_timeout if timeout is None else timeout
    wait_for_database(app, limit)  # first: a permanent database problem fails at once
    wait_for_redis(app, limit)
