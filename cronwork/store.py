"""Typed read/write of the scheduling state Cronwork keeps in Redis (one owner per format).

Definitions, pauses, fired one-offs and scheduler heartbeats are written and decoded here
only; every other module calls these functions instead of building keys or parsing JSON.
Replies are bytes: the clients are made without decode_responses (cronwork/connection.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline

from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.spec import ScheduleSpec

# A scheduler loop beats after every pass (at least once a second): older than this, no
# loop advances. One limit for the container probe (app/probe.py) and /healthz, which used
# to disagree (30 s and 120 s, issue 10).
SCHEDULER_HEARTBEAT_MAX_AGE = 30.0

Writer = Redis | Pipeline


class ScheduleSource(StrEnum):
    """Where a registered schedule comes from: the schedule file (a sync owns it) or an
    operator at run time (the API, CLI or a page owns it; a sync never touches it)."""

    DECLARED = "declared"
    RUNTIME = "runtime"


@dataclass(frozen=True)
class Definition:
    """What is registered for one schedule: its spec, the spec's definition hash, its source,
    and for a runtime schedule the fields as the operator submitted them (shown back for an
    edit, so a field the spec stores in another form is never lost on the way back)."""

    hash: str
    spec: dict[str, Any]
    source: ScheduleSource = ScheduleSource.DECLARED
    submitted: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        spec: ScheduleSpec,
        source: ScheduleSource = ScheduleSource.DECLARED,
        submitted: dict[str, Any] | None = None,
    ) -> Definition:
        return cls(hash=spec.definition_hash(), spec=spec.to_dict(), source=source, submitted=submitted)

    def encode(self) -> str:
        data: dict[str, Any] = {"hash": self.hash, "spec": self.spec, "source": str(self.source)}
        if self.submitted is not None:
            data["submitted"] = self.submitted
        return json.dumps(data)

    @classmethod
    def decode(cls, raw: bytes | str) -> Definition:
        """A definition written before sources existed has none: it came from a sync (declared)."""
        data = json.loads(raw)
        submitted = data.get("submitted")
        return cls(
            hash=str(data["hash"]),
            spec=data["spec"],
            source=ScheduleSource(data.get("source", ScheduleSource.DECLARED)),
            submitted=submitted if isinstance(submitted, dict) else None,
        )

    def to_spec(self) -> ScheduleSpec:
        return ScheduleSpec.from_dict(self.spec)


@dataclass(frozen=True)
class Pause:
    """An operator's pause of one schedule."""

    reason: str
    since: str

    def encode(self) -> str:
        return json.dumps({"reason": self.reason, "since": self.since})

    @classmethod
    def decode(cls, raw: bytes) -> Pause:
        """Tolerant: a value written by hand (plain text) is shown as the reason."""
        try:
            data = json.loads(raw)
            return cls(reason=str(data.get("reason", "")), since=str(data.get("since", "")))
        except (ValueError, AttributeError):
            return cls(reason=raw.decode(errors="replace"), since="")

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "since": self.since}


# -- definitions ---------------------------------------------------------------------------


def definitions(connection: Redis, keys: Keys) -> dict[str, Definition]:
    """Every registered definition, by schedule name."""
    raw = cast(dict[bytes, bytes], connection.hgetall(keys.definitions))
    return {name.decode(): Definition.decode(value) for name, value in raw.items()}


def definition(connection: Redis, keys: Keys, name: str) -> Definition | None:
    """The registered definition of one schedule, or None."""
    raw = cast(bytes | None, connection.hget(keys.definitions, name))
    return None if raw is None else Definition.decode(raw)


def raw_definitions(connection: Redis, keys: Keys, names: list[str]) -> dict[str, bytes]:
    """The stored definitions of `names` (undecoded, for a reader that caches by value);
    names without one are left out."""
    values = cast(list[bytes | None], connection.hmget(keys.definitions, names)) if names else []
    return {name: raw for name, raw in zip(names, values, strict=True) if raw is not None}


def decode_definitions(raw: dict[bytes, bytes]) -> dict[str, Definition]:
    """Decode an HGETALL reply of Keys.definitions read in a caller's pipeline."""
    return {name.decode(): Definition.decode(value) for name, value in raw.items()}


def registered_specs(connection: Redis, keys: Keys) -> dict[str, ScheduleSpec]:
    """The specs written by the last sync."""
    return {name: d.to_spec() for name, d in definitions(connection, keys).items()}


def registered_queues(connection: Redis, keys: Keys) -> set[str]:
    """The queues the registered schedules enqueue to."""
    return {str(d.spec["queue"]) for d in definitions(connection, keys).values()}


def is_registered(connection: Redis, keys: Keys, name: str) -> bool:
    return bool(connection.hexists(keys.definitions, name))


def write_definition(
    writer: Writer,
    keys: Keys,
    spec: ScheduleSpec,
    source: ScheduleSource = ScheduleSource.DECLARED,
    submitted: dict[str, Any] | None = None,
) -> None:
    writer.hset(keys.definitions, spec.name, Definition.of(spec, source, submitted).encode())


def unregister(writer: Writer, keys: Keys, name: str) -> None:
    """Remove a template: its place in rq-scheduler's set, its job hash, its definition (the
    scheduler stops at once; the ledger stays)."""
    template_id = keys.template_id(name)
    writer.zrem(RQ_SCHEDULER_SET, template_id)
    writer.delete(keys.template_key(name))
    writer.hdel(keys.definitions, name)


# -- pauses --------------------------------------------------------------------------------


def pauses(connection: Redis, keys: Keys) -> dict[str, Pause]:
    """Paused schedules: name → pause."""
    raw = cast(dict[bytes, bytes], connection.hgetall(keys.paused))
    return {name.decode(): Pause.decode(value) for name, value in raw.items()}


def paused_names(connection: Redis, keys: Keys) -> set[str]:
    return {name.decode() for name in cast(list[bytes], connection.hkeys(keys.paused))}


def is_paused(connection: Redis, keys: Keys, name: str) -> bool:
    return bool(connection.hexists(keys.paused, name))


def set_pause(writer: Writer, keys: Keys, name: str, pause: Pause) -> None:
    writer.hset(keys.paused, name, pause.encode())


def clear_pause(connection: Redis, keys: Keys, name: str) -> bool:
    """Resume; False if the schedule was not paused."""
    return bool(connection.hdel(keys.paused, name))


# -- fired one-offs ------------------------------------------------------------------------


def fired_oneoffs(connection: Redis, keys: Keys) -> dict[str, int]:
    """One-offs the scheduler has handled: name → tick epoch (see Keys.oneoffs_fired)."""
    raw = cast(dict[bytes, bytes], connection.hgetall(keys.oneoffs_fired))
    return {name.decode(): int(tick) for name, tick in raw.items()}


def record_fired_oneoff(writer: Writer, keys: Keys, name: str, tick_epoch: int) -> None:
    writer.hset(keys.oneoffs_fired, name, tick_epoch)


# -- scheduler heartbeats ------------------------------------------------------------------


def beat_scheduler(
    connection: Redis, keys: Keys, scheduler_name: str, at: float, clock_offset: float | None = None
) -> None:
    """Record that a scheduler loop completed a pass at `at` (epoch seconds), and the offset
    of its host clock to Redis's when it measures one."""
    if clock_offset is None:
        connection.hset(keys.scheduler_heartbeat, scheduler_name, at)
        return
    with connection.pipeline(transaction=False) as pipe:
        pipe.hset(keys.scheduler_heartbeat, scheduler_name, at)
        pipe.hset(keys.scheduler_clock_offset, scheduler_name, clock_offset)
        pipe.execute()


def forget_scheduler(connection: Redis, keys: Keys, scheduler_name: str) -> None:
    """A scheduler that stops cleanly takes its heartbeat and clock offset with it."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hdel(keys.scheduler_heartbeat, scheduler_name)
        pipe.hdel(keys.scheduler_clock_offset, scheduler_name)
        pipe.execute()


def live_scheduler_offsets(
    connection: Redis, keys: Keys, now: float | None = None, max_age: float = SCHEDULER_HEARTBEAT_MAX_AGE
) -> dict[str, float]:
    """Clock offsets (Redis minus host, s) of the schedulers whose heartbeat is fresh."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.scheduler_heartbeat)
        pipe.hgetall(keys.scheduler_clock_offset)
        beats, offsets = pipe.execute()
    now = time.time() if now is None else now
    return {
        name.decode(): float(offsets[name])
        for name, beat in beats.items()
        if name in offsets and now - float(beat) <= max_age
    }


def scheduler_heartbeat_age(connection: Redis, keys: Keys, now: float | None = None) -> float | None:
    """Seconds since the freshest scheduler loop pass, or None if no loop ever beat."""
    beats = [float(v) for v in cast(list[bytes], connection.hvals(keys.scheduler_heartbeat))]
    if not beats:
        return None
    return (time.time() if now is None else now) - max(beats)


def scheduler_alive(age: float | None, max_age: float = SCHEDULER_HEARTBEAT_MAX_AGE) -> bool:
    """Whether a heartbeat age proves some scheduler loop advances."""
    return age is not None and age <= max_age
