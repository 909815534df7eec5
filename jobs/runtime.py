"""The worker-side Job class: every job inside a fresh Flask app context, `jobs.*` only.

This is flask-rq's bound Job-class pattern: a Job subclass bound to the app, set on the
worker (and so on every job it dequeues), whose `perform()` runs in `app.app_context()`.
It also takes the per-schedule overlap lock and refuses to report success for a job that
swallowed its timeout.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any, ClassVar

from flask import Flask
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from app.extensions import cronwork, db
from cronwork.runs import RunState, StartKind
from cronwork.serializer import JSONJob
from jobs.outcomes import RunRecorder, schedule_of

log = logging.getLogger(__name__)

ALLOWED_PACKAGE = "jobs"
HARD_KILL_GRACE = 10  # seconds a job may keep running after its timeout before SIGKILL
OVERLAP_LOCK_MARGIN = 60  # lock TTL = timeout + this: a dead worker's lock expires on its own


class ForbiddenJobFunction(RuntimeError):
    """A job names a function outside the `jobs` package; it is refused, nothing runs."""


class TimeoutSwallowed(JobTimeoutException):
    """The job caught its JobTimeoutException and returned anyway: still a timeout."""


def is_allowed(func_name: str | None) -> bool:
    """Whether a dotted function path lies inside the `jobs` package (a job without one is not)."""
    return func_name is not None and func_name.startswith(f"{ALLOWED_PACKAGE}.")


class EnforcedDeathPenalty(UnixSignalDeathPenalty):
    """rq's SIGALRM timeout, made impossible to swallow.

    RQ's JobTimeoutException is an ordinary Exception, so `except Exception` in job code
    eats it and the job runs on. Here the firing is remembered (the job then fails on
    return) and a second alarm SIGKILLs the horse HARD_KILL_GRACE seconds later.
    """

    fired: ClassVar[bool] = False

    def handle_death_penalty(self, signum: int, frame: FrameType | None) -> None:
        if self._exception is JobTimeoutException:
            EnforcedDeathPenalty.fired = True
            signal.signal(signal.SIGALRM, _hard_kill)
            signal.alarm(HARD_KILL_GRACE)
        super().handle_death_penalty(signum, frame)


def _hard_kill(signum: int, frame: FrameType | None) -> None:
    log.error("job ignored its timeout for %ss: killing the work horse", HARD_KILL_GRACE)
    os.kill(os.getpid(), signal.SIGKILL)


class AppJob(JSONJob):
    """An RQ job that runs inside the bound Flask app's context."""

    flask_app: ClassVar[Flask | None] = None
    # Built once by bind_app in the worker's process, so a horse (a fresh fork for each job)
    # does not build it again.
    recorder: ClassVar[RunRecorder | None] = None
    outcome: RunState | None = None  # SKIPPED_OVERLAP when the run did not execute
    ledger_done = False  # the run had already ended in the ledger: nothing to record

    def perform(self) -> Any:
        """Refuse foreign functions, run in a fresh app context, enforce overlap and timeout."""
        # Checked on the name, before rq imports anything: whoever can write to Redis must not
        # be able to run `os.system`.
        if not is_allowed(self.func_name):
            raise ForbiddenJobFunction(
                f"job {self.id}: {self.func_name!r} is outside the {ALLOWED_PACKAGE!r} package"
            )
        app = self.flask_app
        if app is None:
            raise RuntimeError("AppJob is not bound to an app: use bind_app(app)")
        EnforcedDeathPenalty.fired = False
        with app.app_context():
            try:
                return self._perform_with_lock(app)
            finally:
                db.session.remove()

    def _perform_with_lock(self, app: Flask) -> Any:
        recorder = self.recorder or RunRecorder(cronwork.redis(app), cronwork.keys(app))
        meta = self.meta if isinstance(self.meta, dict) else {}
        ttl = 0
        if meta.get("overlap") == "skip":
            ttl = int(self.timeout or 0) + HARD_KILL_GRACE + OVERLAP_LOCK_MARGIN
        # The attempt's token fences every later write of this run (record, lock, rq status);
        # the overlap lock is taken in the same script, so a dead worker's lock expires on its own.
        kind, detail = recorder.started(self, ttl)
        if kind is StartKind.HELD:
            self.outcome = RunState.SKIPPED_OVERLAP
            log.info("skipped_overlap schedule=%s held_by=%s", schedule_of(self), detail or "?")
            return {"skipped": "overlap", "running": detail}
        if kind is StartKind.DONE:
            # rq retried a run whose success was recorded before its horse died; the ledger
            # keeps that success and rq now commits it too.
            self.ledger_done = True
            return {"already": detail}
        return self._perform_checked()

    def _perform_checked(self) -> Any:
        result = super().perform()
        if EnforcedDeathPenalty.fired:
            raise TimeoutSwallowed(f"job {self.id} caught its JobTimeoutException and returned anyway")
        return result


def bind_app(app: Flask) -> type[AppJob]:
    """An AppJob subclass bound to `app`, recording runs on the app's Redis client (set the
    worker's client with cronwork.use_connection first: horses then reconnect once)."""
    recorder = RunRecorder(cronwork.redis(app), cronwork.keys(app))
    return type("BoundAppJob", (AppJob,), {"flask_app": app, "recorder": recorder})
