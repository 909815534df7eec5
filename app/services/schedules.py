"""Schedules as operators see them (next fires, pause, last runs, failure streak) and their actions.

Shared by the ops API, the pages and the CLI. "Registered" means written to Redis by the last
sync (what the scheduler runs); "declared" means present in the schedule file, which also
lists the disabled schedules that a sync never registers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from redis import Redis

from app.extensions import cronwork
from cronwork import store
from cronwork.keys import CLAIM_TTL, RQ_SCHEDULER_SET, Keys
from cronwork.ledger import Ledger
from cronwork.loader import load_schedule
from cronwork.runjob import build_run_job
from cronwork.runs import RunWriter, Trigger
from cronwork.serializer import json_queue
from cronwork.spec import ScheduleError, ScheduleSpec
from cronwork.timing import fire_times

log = logging.getLogger(__name__)

MAX_REASON = 500  # characters of a pause reason
NEXT_FIRES = 5
RECENT_RUNS = 30
MAX_HISTORY = 500
# Parsed specs per version of the file: safe to share because parsing is pure (the same file
# gives the same specs whatever the clock or Redis), so every process shows the same list.
_declared_cache: dict[tuple[str, int], dict[str, ScheduleSpec]] = {}


class ScheduleActionError(Exception):
    """An operator action on a schedule was refused; the message says why."""


class UnknownSchedule(ScheduleActionError, LookupError):
    """No schedule of that name is declared, registered or recorded."""


class NotRunnable(ScheduleActionError):
    """The schedule is declared but cannot run now (disabled, not synced, or already run this second)."""


class InvalidReason(ScheduleActionError, ValueError):
    """A pause reason that is missing, too long or not plain text."""


@dataclass(frozen=True)
class ManualRun:
    """A run enqueued by an operator."""

    schedule: str
    job_id: str
    tick: int
    queue: str


@dataclass
class ScheduleView:
    """One schedule with everything the list shows; `recent` is its ledger, newest first."""

    spec: ScheduleSpec
    enabled: bool
    registered: bool
    next_fire_times: list[datetime]
    paused: dict[str, str] | None
    consecutive_failures: int
    recent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def last_run(self) -> dict[str, Any] | None:
        """The newest ledger record, summarised."""
        if not self.recent:
            return None
        record = self.recent[0]
        tick = datetime.fromtimestamp(record["tick"], UTC).isoformat()
        at = record.get("ended_at") or record.get("started_at") or record.get("enqueued_at")
        return {
            "state": record.get("state"),
            "tick": tick,
            "at": at or tick,
            "duration": record.get("duration"),
            "job_id": record.get("job_id"),
            "trigger": record.get("trigger", "schedule"),
        }


class ScheduleService:
    """Reads and acts on schedules in one Redis under one key prefix."""

    def __init__(
        self,
        connection: Redis,
        keys: Keys,
        schedule_file: str | Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connection = connection
        self.keys = keys
        self.schedule_file = Path(schedule_file) if schedule_file else None
        self.clock = clock
        self.ledger = Ledger(connection, keys)

    @classmethod
    def for_app(cls, app: Flask | None = None) -> ScheduleService:
        """The service on the app's Redis, prefix and schedule file."""
        # ignore: Flask types current_app as Flask, but it is a LocalProxy to unwrap.
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        # The file is read from app.config, not the settings built by create_app():
        # tests/app/conftest.py still sets SCHEDULE_FILE after the factory. Switch to
        # cronwork.settings(app).schedule_file once it passes the file to create_app().
        return cls(cronwork.redis(app), cronwork.keys(app), app.config.get("SCHEDULE_FILE"))

    # -- reading ---------------------------------------------------------------------------

    def registered(self) -> dict[str, ScheduleSpec]:
        """Specs written by the last sync."""
        return store.registered_specs(self.connection, self.keys)

    def declared(self) -> dict[str, ScheduleSpec]:
        """Specs of the schedule file (empty when it is missing or invalid: logged)."""
        if self.schedule_file is None:
            return {}
        try:
            key = (str(self.schedule_file), self.schedule_file.stat().st_mtime_ns)
        except OSError as exc:
            log.warning("schedule file unreadable, showing registered schedules only: %s", exc)
            return {}
        if key not in _declared_cache:  # parsed once per version of the file
            _declared_cache.clear()
            try:
                _declared_cache[key] = dict(load_schedule(self.schedule_file).specs)
            except ScheduleError as exc:
                log.warning("schedule file invalid, showing registered schedules only: %s", exc)
                _declared_cache[key] = {}
        return _declared_cache[key]

    def paused(self) -> dict[str, dict[str, str]]:
        """Paused schedules: name → {reason, since}."""
        return {name: pause.as_dict() for name, pause in store.pauses(self.connection, self.keys).items()}

    def overview(self, recent: int = RECENT_RUNS) -> list[ScheduleView]:
        """Every declared or registered schedule, by name."""
        registered, declared, paused = self.registered(), self.declared(), self.paused()
        names = sorted(set(registered) | set(declared))
        with self.connection.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zscore(RQ_SCHEDULER_SET, self.keys.template_id(name))
                pipe.get(self.keys.failure_streak(name))
            replies = pipe.execute()
        views = []
        for i, name in enumerate(names):
            spec = registered.get(name) or declared[name]
            score, streak = replies[2 * i], replies[2 * i + 1]
            enabled = declared[name].enabled if name in declared else True
            views.append(
                ScheduleView(
                    spec=spec,
                    enabled=enabled,
                    registered=name in registered,
                    next_fire_times=self._next_fires(spec, score, enabled, NEXT_FIRES),
                    paused=paused.get(name),
                    consecutive_failures=int(streak or 0),
                    recent=self.ledger.history(name, recent) if recent else [],
                )
            )
        return views

    def get(self, name: str, recent: int = RECENT_RUNS) -> ScheduleView:
        """One schedule; UnknownSchedule if neither declared nor registered."""
        for view in self.overview(recent=0):
            if view.name == name:
                view.recent = self.ledger.history(name, recent) if recent else []
                return view
        raise UnknownSchedule(f"unknown schedule {name!r}")

    def next_fires(self, name: str, count: int = NEXT_FIRES) -> list[datetime]:
        """The next `count` fire instants (UTC) of a schedule."""
        spec = self.registered().get(name) or self.declared().get(name)
        if spec is None:
            raise UnknownSchedule(f"unknown schedule {name!r}")
        score = self.connection.zscore(RQ_SCHEDULER_SET, self.keys.template_id(name))
        return self._next_fires(spec, score, spec.enabled, count)

    def _next_fires(
        self, spec: ScheduleSpec, score: float | None, enabled: bool, count: int
    ) -> list[datetime]:
        """From the template's real next tick when registered, else computed from now."""
        if not enabled or count <= 0:
            return []
        if score is None:
            return fire_times(spec.trigger, spec.zone, self.clock(), count)
        first = datetime.fromtimestamp(score, UTC)
        return [first, *fire_times(spec.trigger, spec.zone, first, count - 1)]

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The ledger of a schedule, newest first (also for one no longer declared)."""
        self.require(name)
        records = self.ledger.history(name, min(max(limit, 1), MAX_HISTORY))
        for record in records:
            record["tick_iso"] = datetime.fromtimestamp(record["tick"], UTC).isoformat()
        return records

    def require(self, name: str) -> None:
        """Raise UnknownSchedule unless the schedule is declared, registered or has a ledger."""
        if not self._known(name) and not self.connection.exists(self.keys.ledger(name)):
            raise UnknownSchedule(f"unknown schedule {name!r}")

    def _known(self, name: str) -> bool:
        return store.is_registered(self.connection, self.keys, name) or name in self.declared()

    # -- acting ----------------------------------------------------------------------------

    def pause(self, name: str, reason: Any) -> dict[str, str]:
        """Pause a schedule: its ticks are recorded as `paused` until resumed."""
        text = check_reason(reason)
        if not self._known(name):
            raise UnknownSchedule(f"unknown schedule {name!r}")
        since = self.paused().get(name, {}).get("since") or self.clock().isoformat()
        pause = store.Pause(reason=text, since=since)
        store.set_pause(self.connection, self.keys, name, pause)
        log.info("paused schedule=%s reason=%r", name, text)
        return pause.as_dict()

    def resume(self, name: str) -> bool:
        """Resume a schedule; False if it was not paused."""
        if not self._known(name) and not store.is_paused(self.connection, self.keys, name):
            raise UnknownSchedule(f"unknown schedule {name!r}")
        resumed = store.clear_pause(self.connection, self.keys, name)
        log.info("resumed schedule=%s was_paused=%s", name, resumed)
        return resumed

    def run_now(self, name: str) -> ManualRun:
        """Enqueue a manual run of a registered schedule; its overlap policy applies on the worker."""
        spec = self.registered().get(name)
        if spec is None:
            if name in self.declared():
                raise NotRunnable(f"schedule {name!r} is declared but not registered (disabled or unsynced)")
            raise UnknownSchedule(f"unknown schedule {name!r}")
        now = self.clock()
        tick = now.replace(microsecond=0)
        epoch = int(tick.timestamp())
        # The same once-only claim as the scheduler's: two presses in one second, or a press at
        # the very second of a scheduled tick, make one run, never two records on one tick.
        if not self.connection.set(self.keys.claim(name, epoch), "manual", nx=True, ex=CLAIM_TTL):
            raise NotRunnable(f"a run of {name!r} for {tick.isoformat()} exists already; retry in a second")
        job_id = self.keys.run_id(name, epoch)
        job = build_run_job(self.connection, spec, tick, job_id, Trigger.MANUAL)
        with self.connection.pipeline(transaction=True) as pipe:
            json_queue(spec.queue, self.connection).enqueue_job(job, pipeline=pipe)
            RunWriter(self.connection, self.keys).enqueued(pipe, name, epoch, job_id, Trigger.MANUAL, now, 0)
            pipe.execute()
        log.info("manual run schedule=%s job_id=%s", name, job_id)
        return ManualRun(schedule=name, job_id=job_id, tick=epoch, queue=spec.queue)


def check_reason(reason: Any) -> str:
    """A pause reason: required, plain text, at most MAX_REASON characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidReason("a reason is required (a short text)")
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise InvalidReason(f"reason is too long: {len(text)} characters, at most {MAX_REASON}")
    if any(ord(ch) < 32 for ch in text):
        raise InvalidReason("reason must be one line of plain text")
    return text
