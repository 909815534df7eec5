"""Schedules as operators see them (next fires, pause, last runs, failure streak) and their actions.

Shared by the ops API, the pages and the CLI. "Registered" means written to Redis (what the
scheduler runs): by the last sync for the file's schedules, by an operator for runtime ones
(app.services.runtime_schedules); "declared" means present in the schedule file, which also
lists the disabled schedules that a sync never registers. Each view says its source.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError

from app.extensions import cronwork
from cronwork import store
from cronwork.keys import CLAIM_TTL, RQ_SCHEDULER_SET, Keys
from cronwork.ledger import Ledger
from cronwork.loader import load_schedule
from cronwork.ratelimit import RateLimit, admit_one, release_one
from cronwork.runjob import build_run_job
from cronwork.runs import RunWriter, Trigger, decode_streak
from cronwork.serializer import json_queue
from cronwork.spec import ScheduleError, ScheduleSpec
from cronwork.store import ScheduleSource
from cronwork.summary import newest_runs
from cronwork.timing import fire_times

log = logging.getLogger(__name__)

MAX_REASON = 500  # characters of a pause reason
NEXT_FIRES = 5
RECENT_RUNS = 30
MAX_HISTORY = 500
PAGE_SIZE = 100  # schedules per page of the list
STATUSES = ("active", "paused", "disabled", "unsynced")  # ScheduleView.status
FILTERS = frozenset({*STATUSES, "failing"})  # what the list filters on: a status, or a failure streak
# The fields of a record the list shows: its marks (state, trigger, duration, error) and the
# last run (its times and job). Only these are read, from the newest RECENT_RUNS records.
LIST_FIELDS = (
    "state",
    "trigger",
    "duration",
    "error_type",
    "error",
    "enqueued_at",
    "started_at",
    "ended_at",
    "job_id",
)
# Parsed specs per version of the file: safe to share because parsing is pure (the same file
# gives the same specs whatever the clock or Redis), so every process shows the same list.
_declared_cache: dict[tuple[str, int], dict[str, ScheduleSpec]] = {}
# Registered specs and their sources by their stored definition (what a sync or an operator
# wrote), parsed once: parsing is pure, and decoding and parsing 1,000 of them cost ~25 ms on
# every request.
_registered_cache: dict[bytes, tuple[ScheduleSpec, ScheduleSource]] = {}


class ScheduleActionError(Exception):
    """An operator action on a schedule was refused; the message says why."""


class UnknownSchedule(ScheduleActionError, LookupError):
    """No schedule of that name is declared, registered or recorded."""


class NotRunnable(ScheduleActionError):
    """The schedule is declared but cannot run now (disabled, not synced, or already run this second)."""


class RateLimited(ScheduleActionError):
    """The schedule's rate_limit has no room for another run until `retry_at`."""

    def __init__(self, name: str, rate: RateLimit, retry_at: datetime) -> None:
        super().__init__(
            f"schedule {name!r} is rate limited ({rate.text}): "
            f"the next run is allowed at {retry_at.isoformat()}"
        )
        self.retry_at = retry_at


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
    next_tick: float | None = None  # the template's score: its real next tick (None: unregistered)
    source: ScheduleSource = ScheduleSource.DECLARED  # the file's, or an operator's at run time
    clash: bool = False  # a runtime schedule whose name the file declares too (the sync reports it)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def status(self) -> str:
        """What the list filters on: paused, disabled, unsynced or active."""
        if self.paused is not None:
            return "paused"
        if not self.enabled:
            return "disabled"
        return "active" if self.registered else "unsynced"

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


@dataclass
class SchedulePage:
    """One page of the list: its schedules and what the whole list holds."""

    views: list[ScheduleView]
    number: int
    pages: int
    matching: int  # schedules that pass the filter, on every page
    total: int  # every declared or registered schedule
    counts: dict[str, int]  # over every schedule: by status, and "failing" (a failure streak)


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
        """Specs registered in Redis, by a sync or at run time."""
        return {name: spec for name, (spec, _) in self.registered_sources().items()}

    def registered_sources(self) -> dict[str, tuple[ScheduleSpec, ScheduleSource]]:
        """Registered specs with their sources."""
        # Read raw; each stored value is decoded (by cronwork.store) and parsed once.
        raw = cast(dict[bytes, bytes], self.connection.hgetall(self.keys.definitions))
        found = {}
        for name, value in raw.items():
            entry = _registered_cache.get(value)
            if entry is None:
                definition = store.Definition.decode(value)
                entry = _registered_cache[value] = (definition.to_spec(), definition.source)
            found[name.decode()] = entry
        if len(_registered_cache) > 2 * len(found) + 100:  # replaced definitions pile up: drop them
            current = {value: _registered_cache[value] for value in raw.values()}
            _registered_cache.clear()
            _registered_cache.update(current)
        return found

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

    def overview(self, recent: int = RECENT_RUNS, fields: Iterable[str] = LIST_FIELDS) -> list[ScheduleView]:
        """Every declared or registered schedule, by name, with `fields` of its newest `recent` runs."""
        views = self._views()
        self._complete(views, recent, fields)
        return views

    def page(
        self,
        number: int = 1,
        size: int = PAGE_SIZE,
        query: str = "",
        status: str = "",
        recent: int = RECENT_RUNS,
    ) -> SchedulePage:
        """Page `number` of the schedules whose name contains `query` and whose status (or
        "failing") is `status`; only that page's runs and next fires are read."""
        views = self._views()
        counts = dict.fromkeys(sorted(FILTERS), 0)
        for view in views:
            counts[view.status] += 1
            counts["failing"] += view.consecutive_failures > 0
        needle = query.strip().lower()
        matching = [
            v
            for v in views
            if needle in v.name.lower()
            and (not status or v.status == status or (status == "failing" and v.consecutive_failures > 0))
        ]
        pages = max(math.ceil(len(matching) / size), 1)
        number = min(max(number, 1), pages)
        shown = matching[(number - 1) * size : number * size]
        self._complete(shown, recent, LIST_FIELDS)
        return SchedulePage(shown, number, pages, len(matching), len(views), counts)

    def _views(self) -> list[ScheduleView]:
        """Every declared or registered schedule, by name, without next fires or runs (one round
        trip for all of them besides the definitions and pauses)."""
        registered, declared, paused = self.registered_sources(), self.declared(), self.paused()
        names = sorted(set(registered) | set(declared))
        scores, streaks = self._scores_and_streaks(names)
        views = []
        for name, score, streak in zip(names, scores, streaks, strict=True):
            spec, source = registered.get(name) or (declared[name], ScheduleSource.DECLARED)
            runtime = source is ScheduleSource.RUNTIME
            views.append(
                ScheduleView(
                    spec=spec,
                    # A runtime schedule is enabled while it exists, whatever the file says of its name.
                    enabled=True if runtime or name not in declared else declared[name].enabled,
                    registered=name in registered,
                    next_fire_times=[],
                    paused=paused.get(name),
                    consecutive_failures=decode_streak(streak),
                    next_tick=score,
                    source=source,
                    clash=runtime and name in declared,
                )
            )
        return views

    def _scores_and_streaks(self, names: list[str]) -> tuple[list[float | None], list[bytes | None]]:
        """The templates' next ticks and the failure streaks of `names`: two commands, one round trip."""
        if not names:
            return [], []
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.zmscore(RQ_SCHEDULER_SET, [self.keys.template_id(name) for name in names])
            pipe.mget([self.keys.failure_streak(name) for name in names])
            scores, streaks = pipe.execute()
        return scores, streaks

    def _complete(self, views: Sequence[ScheduleView], recent: int, fields: Iterable[str]) -> None:
        """Fill in the next fires and the newest `recent` runs of `views` (one round trip)."""
        runs = newest_runs(self.connection, self.keys, [v.name for v in views], recent, fields)
        for view in views:
            view.next_fire_times = self._next_fires(view.spec, view.next_tick, view.enabled, NEXT_FIRES)
            view.recent = runs[view.name]

    def get(self, name: str, recent: int = RECENT_RUNS) -> ScheduleView:
        """One schedule; UnknownSchedule if neither declared nor registered."""
        for view in self._views():
            if view.name == name:
                self._complete([view], 0, ())
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
        first = spec.tick_of(score)  # the score is the tick plus its jitter
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

    def registered_spec(self, name: str) -> ScheduleSpec:
        """The registered spec of a schedule that can run: NotRunnable when it is declared but
        not registered (disabled, unsynced), UnknownSchedule when there is no such schedule."""
        spec = self.registered().get(name)
        if spec is None:
            if name in self.declared():
                raise NotRunnable(f"schedule {name!r} is declared but not registered (disabled or unsynced)")
            raise UnknownSchedule(f"unknown schedule {name!r}")
        return spec

    def run_now(self, name: str) -> ManualRun:
        """Enqueue a manual run of a registered schedule; its overlap policy applies on the worker
        and its rate limit here (RateLimited: recorded rate_limited, nothing enqueued)."""
        spec = self.registered_spec(name)
        now = self.clock()
        tick = now.replace(microsecond=0)
        epoch = int(tick.timestamp())
        # Two presses in one second, or a press at the very second of a scheduled tick, make
        # one run, never two records on one tick: the claim stops a second press and the
        # scheduler's dispatch (which skips a claimed tick); a record there means the
        # scheduler handled that second first.
        claimed = self.connection.set(self.keys.claim(name, epoch), "manual", nx=True, ex=CLAIM_TTL)
        if not claimed or self.connection.exists(self.keys.run_record(name, epoch)):
            raise NotRunnable(f"a run of {name!r} for {tick.isoformat()} exists already; retry in a second")
        job_id = self.keys.run_id(name, epoch)
        if spec.rate_limit is not None:
            admission = admit_one(self.connection, self.keys.schedule_rate(name), spec.rate_limit, job_id)
            if admission.retry_at is not None:
                with self.connection.pipeline(transaction=True) as pipe:
                    RunWriter(self.connection, self.keys).rate_limited(
                        pipe, name, epoch, job_id, Trigger.MANUAL, admission.at, admission.retry_at
                    )
                    pipe.execute()
                log.warning("rate_limited manual run schedule=%s retry_at=%s", name, admission.retry_at)
                raise RateLimited(name, spec.rate_limit, admission.retry_at)
        job = build_run_job(self.connection, spec, tick, job_id, Trigger.MANUAL)
        try:
            with self.connection.pipeline(transaction=True) as pipe:
                json_queue(spec.queue, self.connection).enqueue_job(job, pipeline=pipe)
                writer = RunWriter(self.connection, self.keys)
                writer.enqueued(pipe, name, epoch, job_id, Trigger.MANUAL, now, 0)
                pipe.execute()
        except RedisError:
            if spec.rate_limit is not None:  # nothing was enqueued: the slot goes back
                release_one(self.connection, self.keys.schedule_rate(name), job_id)
            raise
        log.info("manual run schedule=%s job_id=%s", name, job_id)
        return ManualRun(schedule=name, job_id=job_id, tick=epoch, queue=spec.queue)


def check_reason(reason: Any) -> str:
    """A pause reason: required, plain text, at most MAX_REASON characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidReason("a reason is required (a short text)")
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise InvalidReason(f"reason is too long: {len(text)} characters, at most {MAX_REASON}")
    for ch in text:
        if _breaks_one_line(ch):
            name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "a control character")
            raise InvalidReason(
                f"reason must be one line of plain text: U+{ord(ch):04X} ({name}) is not allowed"
            )
    return text


# Characters a reason shown on one line (page, API, CLI, log, audit) must not hold: line and
# paragraph separators split it, bidi controls reorder what follows them so a reason can
# display as something else (issue 13; "Trojan Source", CVE-2021-42574).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# unicodedata has no names for controls: the ones people paste, by their Unicode alias.
_CONTROL_NAMES = {"\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\x85": "NEXT LINE"}
# Cc: C0 and C1 controls (\r, \n, NEL U+0085 …); Zl/Zp: U+2028 and U+2029.
_LINE_BREAKING_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def _breaks_one_line(ch: str) -> bool:
    """Whether `ch` is a control, a line or paragraph separator, or a bidi control."""
    return ch in _BIDI_CONTROLS or unicodedata.category(ch) in _LINE_BREAKING_CATEGORIES
