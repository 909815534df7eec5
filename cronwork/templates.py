"""Writing and removing schedule templates, and the lock every writer of them takes.

A template is what a schedule is registered as: an RQ job hash that is never enqueued itself,
its score in rq-scheduler's set (the next tick) and its definition (cronwork.store). Two
writers share this module: the sync of the schedule file (scheduler_boot.sync) and the
runtime schedules of the web and the CLI (app.services.runtime_schedules), which may not
import scheduler_boot. Both write under one Redis lock, so a sync and a runtime change never
interleave their plan and their writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq_scheduler import Scheduler

from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.serializer import JSONJob
from cronwork.spec import ScheduleSpec
from cronwork.store import ScheduleSource

SYNC_LOCK_TIMEOUT = 60  # seconds a crashed writer may hold the lock
SYNC_LOCK_WAIT = 30  # seconds a concurrent writer waits for it


@contextmanager
def sync_lock(connection: Redis, keys: Keys) -> Iterator[None]:
    """Hold the lock of every template writer; TimeoutError when another held it too long."""
    lock = connection.lock(keys.sync_lock, timeout=SYNC_LOCK_TIMEOUT, blocking_timeout=SYNC_LOCK_WAIT)
    if not lock.acquire():
        raise TimeoutError(f"another sync held {keys.sync_lock} for more than {SYNC_LOCK_WAIT}s")
    try:
        yield
    finally:
        lock.release()


def timing(spec_dict: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What decides a schedule's ticks and their due instants, in its registered (JSON) form:
    trigger, zone and jitter (the score is the next tick plus its jitter, ScheduleSpec.score_of)."""
    return spec_dict.get("trigger"), spec_dict.get("timezone"), spec_dict.get("jitter", 0)


def keeps_place(registered: store.Definition | None, spec: ScheduleSpec) -> bool:
    """Whether rewriting `registered` as `spec` keeps the template's score: same trigger and
    zone, so a tick already due stays due (an update that changes neither loses no tick)."""
    return registered is not None and timing(registered.spec) == timing(spec.to_dict())


class TemplateWriter:
    """Queues the writes of templates on a caller's pipeline (one MULTI per change)."""

    def __init__(self, connection: Redis, keys: Keys) -> None:
        self.keys = keys
        # rq-scheduler builds the job hash as its own tools and dashboards expect it.
        self._scheduler = Scheduler(connection=connection, job_class=JSONJob)

    def write(
        self,
        pipe: Pipeline,
        spec: ScheduleSpec,
        now: datetime,
        keep_place: bool,
        source: ScheduleSource = ScheduleSource.DECLARED,
        submitted: dict[str, Any] | None = None,
    ) -> None:
        """Queue the writes of one template: job hash, score = next fire (unless it keeps its
        place), definition with its source. A spec with no tick due after `now` is unregistered."""
        next_time = spec.next_due(now)
        if next_time is None:  # never for a spec the callers register (expired ones are refused)
            store.unregister(pipe, self.keys, spec.name)
            return
        template_id = self.keys.template_id(spec.name)
        # Replaced, not merged: no field of an older template (a pickled one) may survive.
        pipe.delete(self.keys.template_key(spec.name))
        # The template is never enqueued itself (see scheduler_boot/scheduler.py): it only
        # carries the function for rq-scheduler's tools and dashboards. result_ttl=-1 and no
        # ttl: it never expires.
        job = self._scheduler._create_job(
            spec.func,
            args=list(spec.args),
            kwargs=dict(spec.kwargs),
            commit=False,
            result_ttl=-1,
            id=template_id,
            description=spec.description or spec.name,
            queue_name=spec.queue,
            timeout=spec.timeout,
            meta={"cronwork_schedule": spec.name, "definition_hash": spec.definition_hash()},
        )
        job.save(pipeline=pipe)
        if not keep_place:
            pipe.zadd(RQ_SCHEDULER_SET, {template_id: spec.score_of(next_time.astimezone(UTC))})
        store.write_definition(pipe, self.keys, spec, source, submitted)

    def remove(self, pipe: Pipeline, name: str) -> None:
        """Queue the removal of one template (its ledger stays)."""
        store.unregister(pipe, self.keys, name)
