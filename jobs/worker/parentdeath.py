"""Every child of a worker dies with the worker's main process; its name is soon free again.

A forked horse survives its worker's SIGKILL (an OOM killer, a per-PID supervisor): rq then
declares the run abandoned and retries it on another worker while the orphan still runs it,
and the orphan re-creates `rq:worker:<name>` without a TTL when it ends, so that name can
never start again. rq's scheduler child (`with_scheduler=True`) stays alive too.

Linux's parent-death signal fixes both: each child asks the kernel for SIGKILL when its
parent dies (prctl(PR_SET_PDEATHSIG)). It is armed in an `os.register_at_fork` hook, so it
covers every fork of the worker: rq's horse (`os.fork`), rq's scheduler (a multiprocessing
fork), and processes a job forks in turn. Not covered: programs a job starts with
`subprocess` (fork+exec in C, no Python hook), which the kernel does not signal either.

The name: rq keeps `rq:worker:<name>` 480 s after the last idle heartbeat (worker_ttl + 60)
and 70 s while busy, and `register_birth` refuses a name whose key exists, so a worker
restarted under the same `--name` (compose, systemd, a per-PID supervisor) after a SIGKILL
could not start for up to 8 minutes. Here the key lives WORKER_KEY_TTL after the last
heartbeat, whatever the state.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from typing import Any

from redis.client import Pipeline
from rq import Worker, worker_registration
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT

from jobs.worker.defaults import HEARTBEAT_MIN_GAP, WORKER_KEY_TTL

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_state: dict[str, Any] = {"armed": False, "prctl": None, "parent": 0}


def _record_parent() -> None:
    """Before each fork: remember who the parent is, for the child to compare with."""
    _state["parent"] = os.getpid()


def _die_with_parent() -> None:
    """In each child, right after fork: SIGKILL when the parent dies."""
    if not _state["armed"]:
        return
    if _state["prctl"](PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    # The parent may have died between fork and prctl: then nobody will signal us, and the
    # kernel has already reparented us (to init or a subreaper).
    if os.getppid() != _state["parent"]:
        os.kill(os.getpid(), signal.SIGKILL)


def arm_parent_death_signal() -> bool:
    """Make every later fork of this process die with it; False where Linux's prctl is missing."""
    if not sys.platform.startswith("linux"):
        log.warning("no parent-death signal on %s: children may outlive a killed worker", sys.platform)
        return False
    if _state["prctl"] is None:
        # Resolved once here, not in the child: no dlopen between fork and prctl.
        _state["prctl"] = ctypes.CDLL(None, use_errno=True).prctl
        os.register_at_fork(before=_record_parent, after_in_child=_die_with_parent)
    _state["armed"] = True
    return True


def disarm_parent_death_signal() -> None:
    """Later forks of this process no longer get the signal (hooks cannot be unregistered)."""
    _state["armed"] = False


class ParentDeathMixin(Worker):
    """Arms the parent-death signal before rq forks anything (horse or scheduler)."""

    def bootstrap(
        self,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        arm_parent_death_signal()
        super().bootstrap(logging_level, date_format, log_format)

    def teardown(self) -> None:
        super().teardown()
        if not self.is_horse:
            disarm_parent_death_signal()


class WorkerKeyMixin(Worker):
    """Caps the worker key's TTL, re-registers the worker when its key had expired, and
    writes the key only when that changes something."""

    _beat_at: float | None = None  # time.monotonic() of the last heartbeat sent on its own

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        ttl = min(timeout or WORKER_KEY_TTL, WORKER_KEY_TTL)
        if pipeline is not None:
            super().heartbeat(ttl, pipeline)
            return
        # rq sends one before and one after each dequeue and one after each job: three round
        # trips a job on a busy worker for a key that lives WORKER_KEY_TTL. One a second keeps
        # it as alive and `last_heartbeat` within a second (bench/worker.py).
        now = time.monotonic()
        if self._beat_at is not None and now - self._beat_at < HEARTBEAT_MIN_GAP:
            return
        with self.connection.pipeline() as pipe:
            super().heartbeat(ttl, pipe)
            pipe.sismember(self.redis_workers_keys, self.key)
            replies = pipe.execute()
        self._beat_at = now
        # rq's heartbeat starts with HSET last_heartbeat: 1 means the field was new, so the key
        # had expired (an outage longer than the TTL) and now holds that field only (the same
        # test as rq's maintain_heartbeats, rq/rq#1450); meanwhile another worker's cleanup may
        # have dropped the name from the registry set.
        recreated = replies[0] == 1 or not replies[-1]
        if recreated and self.birth_date is not None:
            self.log.warning("worker key %s had expired: registering the worker again", self.key)
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping={**self.serialize(), "state": self.get_state()})
                worker_registration.register(self, pipe)
                pipe.expire(self.key, ttl)
                pipe.execute()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        # rq sets `idle` after each job and again before the next dequeue. Only this process
        # writes its state (rq's set_state; the re-registration above writes get_state()),
        # so the key already holds it: one round trip a job saved.
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)
