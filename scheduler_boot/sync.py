"""Reconcile the declared schedule with rq-scheduler's set: add, update, remove, nothing else.

Cronwork owns only the templates whose id starts with its prefix; every other scheduled
job (an app's one-off `enqueue_at`) is left alone. Each template's definition hash is kept
in one Redis hash (cronwork.store), so a no-op re-sync is a single pipelined read and zero
writes. A one-off whose `at` has passed is `expired`: never registered, its leftovers removed.
An updated template whose trigger and zone did not change keeps its place in the set (a tick
already due stays due), so an upgrade that only changes definition hashes loses no tick.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq_scheduler import Scheduler

from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.serializer import JOB_SERIALIZER, JSONJob
from cronwork.spec import ScheduleSpec
from cronwork.timing import OneOffTrigger, one_off_instant

log = logging.getLogger(__name__)

SYNC_LOCK_TIMEOUT = 60  # seconds a crashed sync may hold the lock
SYNC_LOCK_WAIT = 30  # seconds a concurrent boot waits for it


@dataclass
class SyncPlan:
    """What a sync adds, updates, removes and leaves untouched (schedule names, sorted).

    `expired` maps each enabled one-off whose `at` has passed to a note saying whether the
    scheduler ran it; any template it left is in `removed`. `retimed` lists the updated
    schedules whose next fire is computed again (trigger or zone changed, or not in the set);
    every other updated one keeps its score.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retimed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    expired: dict[str, str] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def render(self) -> str:
        """Human-readable plan, one line per schedule."""
        expired = [f"x {name}: {note}" for name, note in sorted(self.expired.items())]
        if not self.has_changes:
            summary = f"no changes ({len(self.unchanged)} schedules unchanged"
            summary += f", {len(self.expired)} expired)" if self.expired else ")"
            return "\n".join([summary, *expired])
        lines = [f"+ {n}" for n in self.added] + [f"~ {n}" for n in self.updated]
        lines += [f"- {n}" for n in self.removed]
        lines += expired
        lines.append(
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
            + (f", {len(self.expired)} expired" if self.expired else "")
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Registered:
    """What Redis holds for Cronwork's templates."""

    hashes: dict[str, str]  # name → definition hash
    timings: dict[str, tuple[Any, Any]]  # name → (trigger, timezone) as registered
    in_set: set[str]  # names in rq-scheduler's set with their job hash present
    not_json: set[str]  # names whose job hash is not Cronwork's JSON format (an older pickle)
    fired: dict[str, int]  # one-offs the scheduler handled: name → tick epoch


def _registered(connection: Redis, keys: Keys, names: list[str]) -> _Registered:
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.definitions)
        pipe.zrange(RQ_SCHEDULER_SET, 0, -1)
        pipe.hgetall(keys.oneoffs_fired)
        for name in names:
            pipe.hmget(keys.template_key(name), "data", "meta")
        definitions_raw, scheduled_ids, fired_raw, *jobs = pipe.execute()
    definitions = store.decode_definitions(definitions_raw)
    hashes = {name: d.hash for name, d in definitions.items()}
    timings = {name: (d.spec.get("trigger"), d.spec.get("timezone")) for name, d in definitions.items()}
    in_set = set()
    for raw in scheduled_ids:
        scheduled = keys.name_from_template_id(raw.decode())
        if scheduled is not None:
            in_set.add(scheduled)
    # A template whose job hash vanished (deleted by hand, evicted) is not really registered.
    in_set -= {name for name, (data, _) in zip(names, jobs, strict=True) if data is None}
    not_json = {
        name
        for name, (data, meta) in zip(names, jobs, strict=True)
        if data is not None and not _is_json_job(data, meta)
    }
    fired = {name.decode(): int(tick) for name, tick in fired_raw.items()}
    return _Registered(hashes, timings, in_set, not_json, fired)


def _is_json_job(data: bytes, meta: bytes | None) -> bool:
    """Whether a stored job hash is in Cronwork's JSON format; never unpickles anything.

    Templates written by older, pickle-based versions must be rewritten: RQ unpickles a
    job's meta on every fetch (cronwork/serializer.py says why that is not acceptable).
    """
    try:
        payload = zlib.decompress(data)
    except zlib.error:
        payload = data  # rq stores uncompressed data when compression did not apply
    try:
        JOB_SERIALIZER.loads(payload)
        if meta:
            JOB_SERIALIZER.loads(meta)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def compute_plan(connection: Redis, specs: Mapping[str, ScheduleSpec], keys: Keys, now: datetime) -> SyncPlan:
    """Compare declared enabled specs with what Redis holds; reads only."""
    enabled = {name: spec for name, spec in specs.items() if spec.enabled}
    expired = {name for name, spec in enabled.items() if spec.is_expired(now)}
    declared = {name: spec for name, spec in enabled.items() if name not in expired}
    found = _registered(connection, keys, sorted(declared))
    plan = SyncPlan()
    for name in sorted(declared):
        spec = declared[name]
        current = found.hashes.get(name) == spec.definition_hash()
        if name in found.in_set and current and name not in found.not_json:
            plan.unchanged.append(name)
        elif name in found.in_set or name in found.hashes:
            plan.updated.append(name)
            if name not in found.in_set or found.timings.get(name) != _timing(spec):
                plan.retimed.append(name)
        else:
            plan.added.append(name)
    plan.removed = sorted((set(found.hashes) | found.in_set) - set(declared))
    plan.expired = {name: _expired_note(enabled[name], found.fired.get(name)) for name in sorted(expired)}
    return plan


def _timing(spec: ScheduleSpec) -> tuple[Any, Any]:
    """What decides a schedule's ticks, in its registered (JSON) form."""
    return spec.to_dict()["trigger"], spec.timezone


def _expired_note(spec: ScheduleSpec, fired_at: int | None) -> str:
    """Why an enabled one-off is not registered, and whether the scheduler ran it."""
    assert isinstance(spec.trigger, OneOffTrigger)
    at = f"at = {spec.trigger.at.isoformat()} ({spec.timezone}) has passed"
    if fired_at == int(one_off_instant(spec.trigger, spec.zone).timestamp()):
        return f"{at}; the scheduler handled it at that tick (see its ledger)"
    return f"{at} and it never ran here; remove it or set enabled = false"


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
        for name, note in plan.expired.items():
            log.warning("sync schedule=%s action=expired %s", name, note)
        if not plan.has_changes:
            return plan
        scheduler = Scheduler(connection=connection, job_class=JSONJob)
        keep_place = set(plan.updated) - set(plan.retimed)
        with connection.pipeline(transaction=True) as pipe:
            for name in plan.added + plan.updated:
                _write_template(pipe, scheduler, keys, specs[name], now, name in keep_place)
            for name in plan.removed:
                store.unregister(pipe, keys, name)
            pipe.execute()
        for action, names in (("added", plan.added), ("updated", plan.updated), ("removed", plan.removed)):
            for name in names:
                log.info("sync schedule=%s action=%s", name, action)
        return plan
    finally:
        lock.release()


def _write_template(
    pipe: Pipeline, scheduler: Scheduler, keys: Keys, spec: ScheduleSpec, now: datetime, keep_place: bool
) -> None:
    """Queue the writes of one template: job hash, score = next fire (unless it keeps its
    place), definition."""
    next_time = spec.next_fire(now)
    if next_time is None:  # never for a declared spec (expired ones are not declared)
        store.unregister(pipe, keys, spec.name)
        return
    template_id = keys.template_id(spec.name)
    # Replaced, not merged: no field of an older template (a pickled one) may survive.
    pipe.delete(keys.template_key(spec.name))
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
    if not keep_place:
        pipe.zadd(RQ_SCHEDULER_SET, {template_id: next_time.astimezone(UTC).timestamp()})
    store.write_definition(pipe, keys, spec)
