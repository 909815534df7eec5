"""The overlap policies that wait, `buffer_one` and `cancel_other`: the waiting run's side.

A run of a schedule whose policy is not `allow` takes the schedule's overlap lock when it starts
(cronwork.runs.START). When the lock is held, `skip` ends the run as `skipped_overlap`; the two
policies here make it wait instead, in its own work horse:

- `buffer_one`: the run takes the schedule's one waiting place (`Keys.overlap_waiter`) and is
  recorded `buffered`, naming the run it waits for (`waiting_for`). It looks at the lock every
  WAIT_POLL seconds (cronwork.runs.WAIT) and starts, `running`, as soon as the holder's end
  released it. A run arriving while the place is taken is `skipped_overlap`.
- `cancel_other`: the same wait, after asking the holder to stop: its record is marked
  (`cancelled_by`) and rq's own stop-job command goes to the worker running it, which kills
  its horse and records it `cancelled` (jobs.worker.recording). The wait is bounded by
  CANCEL_WAIT: a holder that does not stop in time (its worker is gone, or does not hear the
  command) keeps running and the new run ends `skipped_overlap`, its result saying so.

Why the wait is in the horse, rather than the finishing run pushing the buffered one back to
its queue: the waiting run then always has a live owner (its horse) that ends it, starts it or
gives up, and every failure mode is already covered by the mechanisms that cover any running
job. A dead holder's lock is freed by abandon detection or its TTL, and the waiter takes it
then; a dead waiter stops renewing its waiting place (WAITER_TTL) and its run is found
abandoned like any other. A pushed design needs a parked rq job that belongs to no registry,
and a sweeper for the holder that dies without pushing it. The price is one worker busy
waiting per waiting schedule, at most; with a single worker nothing ever waits (the next run
stays in the queue until the worker is free, as with `skip`).

The wait is not the job's time: rq arms the job's timeout (SIGALRM) around `perform()`, so the
horse re-arms it for the full timeout when the wait ends (jobs.runtime), and a safety alarm
bounds the wait itself. rq's worker kills a horse whose job has run `timeout + 60` s; while the
run is `buffered` its worker does not count that time (jobs.worker.overlapwait).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from cronwork.jobdata import DECODE_ERRORS
from cronwork.runs import WaitKind
from cronwork.serializer import JOB_SERIALIZER
from cronwork.spec import OverlapPolicy
from jobs.outcomes import RunRecorder

log = logging.getLogger(__name__)

WAIT_POLL = 0.2  # seconds between two looks at the lock: how late a buffered run starts
CANCEL_WAIT = 30  # seconds a cancel_other run waits for the run it stopped to release the lock
WAITING_POLICIES = frozenset({OverlapPolicy.BUFFER_ONE, OverlapPolicy.CANCEL_OTHER})
POLICY_VALUES = frozenset(str(policy) for policy in OverlapPolicy)
# What rq's stop-job command raises when the holder's job is gone, not running, or unreadable.
STOP_ERRORS: tuple[type[BaseException], ...] = (NoSuchJobError, InvalidJobOperation, *DECODE_ERRORS)


def overlap_policy(job: Job) -> OverlapPolicy:
    """The run's overlap policy, from its meta; `allow` for a job that names none (an app's own
    job on a Cronwork queue) or one this version does not know."""
    meta: Any = job.meta
    value = meta.get("overlap") if isinstance(meta, Mapping) else None
    return OverlapPolicy(value) if value in POLICY_VALUES else OverlapPolicy.ALLOW


def wait_bound(policy: OverlapPolicy, lock_ttl: int) -> float:
    """How long a buffered run waits at most: a holder's lock lives `lock_ttl` at most, so a
    buffer_one run gets it by then; a cancel_other run waits only for the stop."""
    return float(CANCEL_WAIT) if policy is OverlapPolicy.CANCEL_OTHER else float(lock_ttl)


def stop_holder(recorder: RunRecorder, job: Job, holder: str | None) -> bool:
    """cancel_other: mark the holder's record, then send rq's stop-job command for its job;
    False when there was nothing to stop (it ended meanwhile, or runs on no worker)."""
    if holder is None or not recorder.cancel_requested(job):
        return False  # it ended meanwhile: the lock is free or about to be
    try:
        send_stop_job_command(recorder.connection, holder, serializer=JOB_SERIALIZER)
    except STOP_ERRORS as exc:
        log.warning("cannot stop run %s: %s; waiting for its lock to be released", holder, exc)
        return False
    log.info("asked run %s to stop (cancel_other)", holder)
    return True


def wait_for_turn(
    recorder: RunRecorder, job: Job, lock_ttl: int, bound: float, poll: float = WAIT_POLL
) -> tuple[WaitKind, str | None]:
    """Look at the lock until the buffered run gets it, is passed over, is stale, or `bound`
    seconds have gone by (then WAITING): the kind and the job id of the run in the way."""
    deadline = time.monotonic() + bound
    while True:
        kind, in_the_way = recorder.waited(job, lock_ttl)
        if kind is not WaitKind.WAITING or time.monotonic() >= deadline:
            return kind, in_the_way
        time.sleep(poll)
