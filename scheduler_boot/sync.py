"""Reconcile the declared schedule with rq-scheduler's set: add, update, remove, nothing else.

Cronwork owns only the templates whose id starts with its prefix; every other scheduled
job (an app's one-off `enqueue_at`) is left alone. Each template's definition hash is kept
in one Redis hash, so a no-op re-sync is a single pipelined read and zero writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from redis import Redis
from redis.client import Pipeline
from rq_scheduler import Scheduler

from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.serializer import JSONJob
from cronwork.spec import ScheduleSpec

log = logging.getLogger(__name__)

SYNC_LOCK_TIMEOUT = 60  # seconds a crashed sync may hold the lock
SYNC_LOCK_WAIT = 30  # seconds a concurrent boot waits for it


@dataclass
class SyncPlan:
    """What a sync adds, updates, removes and leaves untouched (schedule names, sorted)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def render(self) -> str:
        """Human-readable plan, one line per schedule."""
        if not self.has_changes:
            return f"no changes ({len(self.unchanged)} schedules unchanged)"
        lines = [f"+ {n}" for n in self.added] + [f"~ {n}" for n in self.updated]
        lines += [f"- {n}" for n in self.removed]
        lines.append(
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
        )
        return "\n".join(lines)


def _registered(connection: Redis, keys: Keys, names: list[str]) -> tuple[dict[str, str], set[str]]:
    """(name → definition hash) of registered templates, and names present in the scheduled set."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.definitions)
        pipe.zrange(RQ_SCHEDULER_SET, 0, -1)
        for name in names:
            pipe.exists(f"rq:job:{keys.template_id(name)}")
        definitions_raw, scheduled_ids, *exists = pipe.execute()
    hashes = {k.decode(): json.loads(v)["hash"] for k, v in definitions_raw.items()}
    in_set = set()
    for raw in scheduled_ids:
        scheduled = keys.name_from_template_id(raw.decode())
        if scheduled is not None:
            in_set.add(scheduled)
    # A template whose job hash vanished (deleted by hand, evicted) is not really registered.
    in_set -= {name for name, ok in zip(names, exists, strict=True) if not ok}
    return hashes, in_set


def compute_plan(
    connection: Redis, specs: Mapping[str, ScheduleSpec], keys: Keys, now: datetime
) -> SyncPlan:
    """Compare declared enabled specs with what Redis holds; reads only.

    A one-off that has fired (accepted as done by load_schedule) is not declared any more.
    """
    declared = {
        name: spec for name, spec in specs.items() if spec.enabled and spec.next_fire(now) is not None
    }
    hashes, in_set = _registered(connection, keys, sorted(declared))
    plan = SyncPlan()
    for name in sorted(declared):
        if name in in_set and hashes.get(name) == declared[name].definition_hash():
            plan.unchanged.append(name)
        elif name in in_set or name in hashes:
            plan.updated.append(name)
        else:
            plan.added.append(name)
    plan.removed = sorted((set(hashes) | in_set) - set(declared))
    return plan


def apply_plan(
    connection: Redis,
    specs: Mapping[str, ScheduleSpec],
    keys: Keys,
    now: datetime,
) -> SyncPlan:
    """Reconcile under the sync lock, in one transaction; returns what was done."""
    lock = connection.lock(keys.sync_lock, timeout=SYNC_LOCK_TIMEOUT, blocking_timeout=SYNC_LOCK_WAIT)
    if not lock.acquire():
        raise TimeoutError(f"another sync held {keys.sync_lock} for more than {SYNC_LOCK_WAIT}s")
    try:
        # Planned again under the lock: a concurrent boot may have just done the work.
        plan = compute_plan(connection, specs, keys, now)
        if not plan.has_changes:
            return plan
        scheduler = Scheduler(connection=connection, job_class=JSONJob)
        with connection.pipeline(transaction=True) as pipe:
            for name in plan.added + plan.updated:
                _write_template(pipe, scheduler, keys, specs[name], now)
            for name in plan.removed:
                template_id = keys.template_id(name)
                pipe.zrem(RQ_SCHEDULER_SET, template_id)
                pipe.delete(f"rq:job:{template_id}")
                pipe.hdel(keys.definitions, name)
            pipe.execute()
        for name in plan.added + plan.updated + plan.removed:
            log.info("sync schedule=%s action=%s", name, _action(plan, name))
        return plan
    finally:
        lock.release()


def _action(plan: SyncPlan, name: str) -> str:
    if name in plan.added:
        return "added"
    return "updated" if name in plan.updated else "removed"


def _write_template(
    pipe: Pipeline, scheduler: Scheduler, keys: Keys, spec: ScheduleSpec, now: datetime
) -> None:
    """Queue the writes of one template: job hash, score = next fire, definition."""
    next_time = spec.next_fire(now)
    template_id = keys.template_id(spec.name)
    if next_time is None:  # a one-off that can no longer fire: make sure nothing is left
        pipe.zrem(RQ_SCHEDULER_SET, template_id)
        pipe.delete(f"rq:job:{template_id}")
        pipe.hdel(keys.definitions, spec.name)
        return
    # The template is never enqueued itself (see scheduler.py): it only carries the function
    # for rq-scheduler's tools and dashboards. result_ttl=-1 and no ttl: it never expires.
    job = scheduler._create_job(
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
    pipe.zadd(RQ_SCHEDULER_SET, {template_id: next_time.timestamp()})
    definition = {"hash": spec.definition_hash(), "spec": spec.to_dict()}
    pipe.hset(keys.definitions, spec.name, json.dumps(definition))
