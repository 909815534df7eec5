"""The worker-side Job class: every job inside a fresh Flask app context, `jobs.*` only.

This is flask-rq's bound Job-class pattern: a Job subclass bound to the app, set on the
worker (and so on every job it dequeues), whose `perform()` runs in `app.app_context()`.
It also applies the schedule's overlap policy (the per-schedule lock; the waits of buffer_one
and cancel_other are jobs.overlap's) and refuses to report success for a job that swallowed
its timeout.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from types import FrameType
from typing import Any, ClassVar

from flask import Flask
from rq import Queue
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from app.extensions import cronwork, db
from cronwork.loader import job_path_problem
from cronwork.runs import WAITER_TTL, RunState, StartKind, WaitKind
from cronwork.serializer import JSONJob
from cronwork.spec import OverlapPolicy
from jobs.outcomes import RunRecorder, schedule_of
from jobs.overlap import WAITING_POLICIES, overlap_policy, stop_holder, wait_bound, wait_for_turn

log = logging.getLogger(__name__)

HARD_KILL_GRACE = 10  # seconds a job may keep running after its timeout before SIGKILL
OVERLAP_LOCK_MARGIN = 60  # lock TTL = timeout + this: a dead worker's lock expires on its own
# Seconds the safety alarm of a wait (jobs.overlap) rings after the wait's bound: a wait stuck in
# a Redis call then ends as a timeout instead of holding the worker.
WAIT_ALARM_MARGIN = 5


class ForbiddenJobFunction(RuntimeError):
    """A job names a function outside the `jobs` package; it is refused, nothing runs."""


class TimeoutSwallowed(JobTimeoutException):
    """The job caught its JobTimeoutException and returned anyway: still a timeout."""


def is_allowed(func_name: str | None) -> bool:
    """Whether a dotted function path lies in a job module of the `jobs` package (not the
    worker's own modules; a job without a function name is not allowed)."""
    return func_name is not None and job_path_problem(func_name) is None


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
            raise ForbiddenJobFunction(f"job {self.id}: {job_path_problem(self.func_name or '')}")
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
        policy = overlap_policy(self)
        ttl = 0
        if policy is not OverlapPolicy.ALLOW:
            ttl = int(self.timeout or 0) + HARD_KILL_GRACE + OVERLAP_LOCK_MARGIN
        waiter_ttl = WAITER_TTL if policy in WAITING_POLICIES else 0
        # The attempt's token fences every later write of this run (record, lock, rq status);
        # the overlap lock is taken in the same script, so a dead worker's lock expires on its own.
        kind, detail = recorder.started(self, ttl, waiter_ttl)
        if kind is StartKind.HELD:
            return self._skipped({"skipped": "overlap", "running": detail})
        if kind is StartKind.DONE:
            # rq retried a run whose success was recorded before its horse died; the ledger
            # keeps that success and rq now commits it too.
            self.ledger_done = True
            return {"already": detail}
        if kind is StartKind.BUFFERED:
            skipped = self._wait_for_turn(recorder, policy, detail, ttl)
            if skipped is not None:
                return self._skipped(skipped)
        return self._perform_checked()

    def _wait_for_turn(
        self, recorder: RunRecorder, policy: OverlapPolicy, holder: str | None, lock_ttl: int
    ) -> dict[str, Any] | None:
        """Wait (buffered) until the overlap lock is this run's; None when it is, else the
        result of a run that ends skipped."""
        stop_asked = policy is OverlapPolicy.CANCEL_OTHER and stop_holder(recorder, self, holder)
        bound = wait_bound(policy, lock_ttl)
        # rq armed SIGALRM with the job's timeout around perform(): the wait is not the job's
        # time. A safety alarm bounds the wait instead, and the job gets its whole timeout after.
        signal.alarm(math.ceil(bound) + WAIT_ALARM_MARGIN)
        kind, in_the_way = wait_for_turn(recorder, self, lock_ttl, bound)
        if kind is WaitKind.RUNNING:
            # rq's own reading of the timeout (Worker.perform_job); -1, no timeout: no alarm.
            signal.alarm(max(int(self.timeout or Queue.DEFAULT_TIMEOUT), 0))
            return None
        if kind is WaitKind.WAITING:
            log.warning("run %s still held the overlap lock after %.0fs: not run", in_the_way, bound)
            if stop_asked:
                return {"skipped": "overlap", "running": in_the_way, "not_stopped_within": bound}
            return {"skipped": "overlap", "running": in_the_way, "waited": bound}
        # PASSED_OVER: the waiting place lapsed (this horse stalled) and a later run took it;
        # STALE: the record is no longer this attempt's (the finishing write is refused too).
        return {"skipped": "overlap", "waiting": in_the_way}

    def _skipped(self, result: dict[str, Any]) -> dict[str, Any]:
        self.outcome = RunState.SKIPPED_OVERLAP
        log.info("skipped_overlap schedule=%s %s", schedule_of(self), result)
        return result

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
