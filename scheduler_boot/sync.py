"""Reconcile the declared schedule with rq-scheduler's set: add, update, remove, nothing else.

Cronwork owns only the templates whose id starts with its prefix; every other scheduled
job (an app's one-off `enqueue_at`) is left alone. A sync owns only the declared ones: a
runtime schedule (added through the API, the CLI or a page) is never updated or removed
here, and a declared name that a runtime schedule holds is reported as a clash, not written.
Each template's definition hash is kept in one Redis hash (cronwork.store), so a no-op
re-sync is a single pipelined read and zero writes. A one-off whose `at` has passed is
`expired`: never registered, its leftovers removed. An updated template whose trigger and
zone did not change keeps its place in the set (a tick already due stays due), so an
upgrade that only changes definition hashes loses no tick.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis

from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.serializer import JOB_SERIALIZER
from cronwork.spec import ScheduleSpec
from cronwork.store import ScheduleSource
from cronwork.templates import TemplateWriter, sync_lock, timing
from cronwork.timing import OneOffTrigger, one_off_instant

log = logging.getLogger(__name__)

CLASH_NOTE = (
    "declared in the file, but a runtime schedule holds this name: the runtime one is kept and the "
    "declared one is not registered (delete the runtime one, or rename one of them)"
)


@dataclass
class SyncPlan:
    """What a sync adds, updates, removes and leaves untouched (schedule names, sorted).

    `expired` maps each enabled one-off whose `at` has passed to a note saying whether the
    scheduler ran it; any template it left is in `removed`. `retimed` lists the updated
    schedules whose next fire is computed again (trigger or zone changed, or not in the set);
    every other updated one keeps its score. `clashes` lists the declared names a runtime
    schedule holds: neither side replaces the other, the plan says so.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retimed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    expired: dict[str, str] = field(default_factory=dict)
    clashes: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)  # runtime schedules, left alone

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def render(self) -> str:
        """Human-readable plan, one line per schedule."""
        expired = [f"x {name}: {note}" for name, note in sorted(self.expired.items())]
        notes = expired + [f"! {name}: {CLASH_NOTE}" for name in self.clashes]
        tail = (f", {len(self.expired)} expired" if self.expired else "") + (
            f", {len(self.clashes)} clashing" if self.clashes else ""
        )
        tail += f", {len(self.runtime)} runtime left alone" if self.runtime else ""
        if not self.has_changes:
            return "\n".join([f"no changes ({len(self.unchanged)} schedules unchanged{tail})", *notes])
        lines = [f"+ {n}" for n in self.added] + [f"~ {n}" for n in self.updated]
        lines += [f"- {n}" for n in self.removed]
        lines += notes
        lines.append(
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged{tail}"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Registered:
    """What Redis holds for Cronwork's templates."""

    hashes: dict[str, str]  # name → definition hash
    timings: dict[str, tuple[Any, Any, Any]]  # name → (trigger, timezone, jitter) as registered
    in_set: set[str]  # names in rq-scheduler's set with their job hash present
    not_json: set[str]  # names whose job hash is not Cronwork's JSON format (an older pickle)
    fired: dict[str, int]  # one-offs the scheduler handled: name → tick epoch
    runtime: set[str]  # names registered by an operator at run time: never the sync's


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
    timings = {name: timing(d.spec) for name, d in definitions.items()}
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
    runtime = {name for name, d in definitions.items() if d.source is ScheduleSource.RUNTIME}
    return _Registered(hashes, timings, in_set, not_json, fired, runtime)


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
    """Compare declared enabled specs with what Redis holds; reads only. Runtime schedules are
    left out of every list but `clashes` (a declared name, enabled or not, that one holds)."""
    found = _registered(connection, keys, sorted(specs))
    clashes = sorted(set(specs) & found.runtime)
    enabled = {name: spec for name, spec in specs.items() if spec.enabled and name not in found.runtime}
    expired = {name for name, spec in enabled.items() if spec.is_expired(now)}
    declared = {name: spec for name, spec in enabled.items() if name not in expired}
    plan = SyncPlan(clashes=clashes, runtime=sorted(found.runtime))
    for name in sorted(declared):
        spec = declared[name]
        current = found.hashes.get(name) == spec.definition_hash()
        if name in found.in_set and current and name not in found.not_json:
            plan.unchanged.append(name)
        elif name in found.in_set or name in found.hashes:
            plan.updated.append(name)
            if name not in found.in_set or found.timings.get(name) != timing(spec.to_dict()):
                plan.retimed.append(name)
        else:
            plan.added.append(name)
    plan.removed = sorted((set(found.hashes) | found.in_set) - set(declared) - found.runtime)
    plan.expired = {name: _expired_note(enabled[name], found.fired.get(name)) for name in sorted(expired)}
    return plan


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
    with sync_lock(connection, keys):
        # Planned again under the lock: a concurrent boot may have just done the work.
        plan = compute_plan(connection, specs, keys, now)
        for name, note in plan.expired.items():
            log.warning("sync schedule=%s action=expired %s", name, note)
        for name in plan.clashes:
            log.warning("sync schedule=%s action=clash %s", name, CLASH_NOTE)
        if not plan.has_changes:
            return plan
        templates = TemplateWriter(connection, keys)
        keep_place = set(plan.updated) - set(plan.retimed)
        with connection.pipeline(transaction=True) as pipe:
            for name in plan.added + plan.updated:
                templates.write(pipe, specs[name], now, name in keep_place)
            for name in plan.removed:
                templates.remove(pipe, name)
            pipe.execute()
        for action, names in (("added", plan.added), ("updated", plan.updated), ("removed", plan.removed)):
            for name in names:
                log.info("sync schedule=%s action=%s", name, action)
        return plan
