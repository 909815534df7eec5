"""The schedule model: frozen, typed ScheduleSpec and its JSON codec.

What a schedule file declares (parsed by cronwork.loader), what a sync registers in Redis
(encoded by cronwork.store) and what the scheduler, workers and ops pages read back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cronwork.ratelimit import RateLimit
from cronwork.timing import CronTrigger, IntervalTrigger, OneOffTrigger, Trigger, next_fire

# Runs of one schedule kept in Redis (jobs, results, records, attempts) unless it says otherwise.
DEFAULT_KEEP_RUNS = 100


class OverlapPolicy(StrEnum):
    """What a run does when another run of its schedule is still running (jobs.runtime)."""

    SKIP = "skip"  # recorded skipped_overlap, nothing runs
    ALLOW = "allow"  # runs beside it
    BUFFER_ONE = "buffer_one"  # waits (buffered) and starts when it ends; a second waiter is skipped
    CANCEL_OTHER = "cancel_other"  # the running one is stopped (cancelled) and this one starts


class ScheduleError(ValueError):
    """The schedule file is invalid; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ScheduleSpec:
    """One validated schedule: what to run, when, and with which run options."""

    name: str
    func: str
    trigger: Trigger
    timezone: str
    queue: str
    timeout: int
    retries: int
    retry_backoff: tuple[int, ...]
    misfire: str
    misfire_grace: int
    overlap: OverlapPolicy
    enabled: bool
    pause_after_failures: int
    description: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    keep_runs: int = DEFAULT_KEEP_RUNS
    rate_limit: RateLimit | None = None
    jitter: int = 0  # seconds: each run is delayed by a deterministic amount in [0, jitter)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire instant strictly after `after`, in UTC."""
        return next_fire(self.trigger, self.zone, after)

    def jitter_of(self, tick_epoch: int) -> float:
        """The delay of the run of `tick_epoch`, in [0, jitter) to the millisecond: derived from
        (name, tick) alone, so every replica, every restart and every reader agrees on it."""
        if not self.jitter:
            return 0.0
        digest = hashlib.sha256(f"{self.name}\0{tick_epoch}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return math.floor(fraction * self.jitter * 1000) / 1000

    def due_at(self, tick: datetime) -> datetime:
        """When the run of `tick` is due: the tick plus its jitter."""
        if not self.jitter:
            return tick
        return tick + timedelta(seconds=self.jitter_of(int(tick.timestamp())))

    def score_of(self, tick: datetime) -> float:
        """The template's score in rq-scheduler's set while `tick` is next: its due instant."""
        return self.due_at(tick).timestamp()

    def tick_of(self, score: float) -> datetime:
        """Inverse of `score_of`: the tick whose due instant is `score`. The loader keeps the
        jitter under the shortest gap between ticks, so exactly one tick lies in
        (score - jitter, score]."""
        at = datetime.fromtimestamp(score, UTC)
        if not self.jitter:
            return at
        tick = self.next_fire(at - timedelta(seconds=self.jitter))
        return at if tick is None else tick

    def is_expired(self, now: datetime) -> bool:
        """A one-off whose instant is not after `now`: it can never fire again."""
        return isinstance(self.trigger, OneOffTrigger) and self.next_due(now) is None

    def next_due(self, now: datetime) -> datetime | None:
        """The first tick whose due instant (tick plus jitter) is after `now`: the tick a
        template written at `now` waits for. Without jitter, the first fire after `now`; with
        it, a tick that has passed but is not due yet (a sync or a restart inside its jitter)
        is still ahead, not skipped."""
        if not self.jitter:
            return self.next_fire(now)
        tick = self.next_fire(now - timedelta(seconds=self.jitter))
        while tick is not None and self.due_at(tick) <= now:
            tick = self.next_fire(tick)
        return tick

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible form; `from_dict` reads it back."""
        trigger: dict[str, Any]
        if isinstance(self.trigger, CronTrigger):
            trigger = {"cron": self.trigger.expression}
        elif isinstance(self.trigger, IntervalTrigger):
            trigger = {
                "every": int(self.trigger.every.total_seconds()),
                "anchor": self.trigger.anchor.isoformat(),
            }
        else:
            trigger = {"at": self.trigger.at.isoformat()}
        return {
            "name": self.name,
            "func": self.func,
            "trigger": trigger,
            "timezone": self.timezone,
            "queue": self.queue,
            "timeout": self.timeout,
            "retries": self.retries,
            "retry_backoff": list(self.retry_backoff),
            "misfire": self.misfire,
            "misfire_grace": self.misfire_grace,
            "overlap": self.overlap,
            "enabled": self.enabled,
            "pause_after_failures": self.pause_after_failures,
            "description": self.description,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "keep_runs": self.keep_runs,
            # Written only when set, so the definitions (and hashes) of schedules without
            # them stay what older syncs wrote.
            **({"rate_limit": self.rate_limit.text} if self.rate_limit else {}),
            **({"jitter": self.jitter} if self.jitter else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        """Inverse of `to_dict` (data written by a sync, trusted); a field an older sync did not
        write (keep_runs) takes its default."""
        raw = data["trigger"]
        trigger: Trigger
        if "cron" in raw:
            trigger = CronTrigger.parse(raw["cron"])
        elif "every" in raw:
            trigger = IntervalTrigger(
                every=timedelta(seconds=raw["every"]),
                anchor=datetime.fromisoformat(raw["anchor"]),
            )
        else:
            trigger = OneOffTrigger(at=datetime.fromisoformat(raw["at"]))
        fields = {k: v for k, v in data.items() if k != "trigger"}
        fields["retry_backoff"] = tuple(fields["retry_backoff"])
        fields["args"] = tuple(fields["args"])
        fields["overlap"] = OverlapPolicy(fields["overlap"])
        if "rate_limit" in fields:
            fields["rate_limit"] = RateLimit.parse(fields["rate_limit"])
        return cls(trigger=trigger, **fields)

    def definition_hash(self) -> str:
        """A stable digest of the whole definition: equal hash means nothing to re-register."""
        return self._definition_hash

    @cached_property
    def _definition_hash(self) -> str:
        # Computed once per spec: a sync asks three times per template (issue 11).
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Schedule:
    """The whole validated file."""

    path: Path
    specs: Mapping[str, ScheduleSpec]

    @property
    def enabled(self) -> dict[str, ScheduleSpec]:
        return {name: spec for name, spec in self.specs.items() if spec.enabled}

    def expired(self, now: datetime) -> list[str]:
        """Enabled one-offs whose `at` has passed by `now` (sorted): nothing to register."""
        return sorted(name for name, spec in self.enabled.items() if spec.is_expired(now))
