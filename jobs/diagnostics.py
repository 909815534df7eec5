"""Diagnostic jobs: prove timeouts, retries, overlap and recovery behave, on a real worker.

Operators can declare them in a schedule (or run them once) to check a deployment; the
test suite uses them to break workers the way production does.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.extensions import cronwork, db
from app.models import User


def sleep(seconds: float, scheduled_for: str | None = None) -> dict[str, float]:
    """Sleep, then succeed: long enough to overlap, time out or be killed."""
    time.sleep(seconds)
    return {"slept": seconds}


def hold(key: str, limit: float = 60.0) -> dict[str, float]:
    """Run until a test pushes to the Redis list `key` (or for `limit` s): a run that ends when
    it is told, not after a guess at how long the test's other steps take."""
    started = time.monotonic()
    cronwork.redis().blpop([key], timeout=limit)
    return {"held": round(time.monotonic() - started, 3)}


def sleep_ignoring_timeout(seconds: float, keep_running: bool = True) -> dict[str, object]:
    """Catch every Exception while sleeping — the bug that hides timeouts in seed systems."""
    deadline = time.monotonic() + seconds
    caught: list[str] = []
    while time.monotonic() < deadline:
        try:
            time.sleep(max(deadline - time.monotonic(), 0))
        except Exception as exc:  # noqa: BLE001 - deliberately the anti-pattern under test
            caught.append(type(exc).__name__)
            if not keep_running:
                break
    return {"caught": caught}


def fail(message: str = "diagnostic failure") -> None:
    """Always raise."""
    raise RuntimeError(message)


def count_users() -> dict[str, int]:
    """Read the database: fails while the database is unreachable."""
    return {"users": db.session.scalar(select(func.count()).select_from(User)) or 0}


def record_run(key: str, scheduled_for: str | None = None) -> str | None:
    """Append the tick to a Redis list: counts how often each occurrence really ran."""
    cronwork.redis().rpush(key, scheduled_for or "-")
    return scheduled_for


def fail_times(key: str, times: int, scheduled_for: str | None = None) -> dict[str, int]:
    """Fail the first `times` calls (counted in Redis under `key`), then succeed."""
    calls = int(cronwork.redis().incr(key))
    if calls <= times:
        raise RuntimeError(f"failing call {calls} of {times}")
    return {"calls": calls}
