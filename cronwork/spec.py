"""Parse and validate the schedule file into frozen, typed specs.

Validation is total: every problem in the file is collected, each reported on one line
naming the file, the schedule and the field, before anything reads or writes Redis.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronwork.timing import (
    CronTrigger,
    IntervalTrigger,
    OneOffTrigger,
    Trigger,
    TriggerError,
    fire_times,
    next_fire,
    one_off_instant,
    parse_duration,
)

NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
# A name ending in "-<digits>" could collide with a run id `<prefix>-<name>-<epoch>`.
RUN_ID_LIKE = re.compile(r"-\d+$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOBS_PACKAGE = "jobs"
TRIGGER_KEYS = ("cron", "every", "at")
MISFIRE_POLICIES = ("run_latest", "skip")
OVERLAP_POLICIES = ("skip", "allow")
# Fire times sampled to find a cron schedule's shortest gap (for the overlap/timeout rule).
CRON_GAP_SAMPLES = 64

BUILTIN_DEFAULTS: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "queue": "default",
    "timeout": "5m",
    "retries": 0,
    "retry_backoff": ["30s", "2m", "10m"],
    "misfire": "run_latest",
    "misfire_grace": "10m",
    "overlap": "skip",
    "enabled": True,
    "pause_after_failures": 0,
}
DEFAULT_KEYS = frozenset(BUILTIN_DEFAULTS)
SCHEDULE_KEYS = DEFAULT_KEYS | {"func", "description", "args", "kwargs", *TRIGGER_KEYS}


class ScheduleError(ValueError):
    """The schedule file is invalid; `errors` holds one line per problem."""

    def __init__(self, errors: list[str], past_oneoffs: frozenset[str] = frozenset()) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.past_oneoffs = past_oneoffs  # schedules whose `at` has passed (one error each)

    @property
    def only_past_oneoffs(self) -> bool:
        """Whether every error is an enabled one-off in the past, which the scheduler may
        already have run (see `fired_oneoffs` of load_schedule)."""
        return len(self.errors) == len(self.past_oneoffs)


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
    overlap: str
    enabled: bool
    pause_after_failures: int
    description: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire instant strictly after `after`, in UTC."""
        return next_fire(self.trigger, self.zone, after)

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        """Inverse of `to_dict` (data written by a sync, trusted)."""
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
        return cls(trigger=trigger, **fields)

    def definition_hash(self) -> str:
        """A stable digest of the whole definition: equal hash means nothing to re-register."""
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


def load_schedule(
    path: Path | str, now: datetime | None = None, fired_oneoffs: Mapping[str, int] | None = None
) -> Schedule:
    """Read and validate the schedule file; raises ScheduleError listing every problem.

    `fired_oneoffs` (name → tick epoch, from Redis) are one-offs the scheduler has handled:
    their `at`, now past, is accepted as done, so a restart after a one-off does not fail.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScheduleError([f"{path}: file not found"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScheduleError([f"{path.name}: not valid TOML: {exc}"]) from None
    return parse_schedule(document, path, now or datetime.now(UTC), fired_oneoffs or {})


def parse_schedule(
    document: Mapping[str, Any], path: Path, now: datetime, fired_oneoffs: Mapping[str, int] | None = None
) -> Schedule:
    """Validate a parsed TOML document; raises ScheduleError listing every problem."""
    errors: list[str] = []
    past_oneoffs: set[str] = set()
    where = path.name
    for key in document:
        if key not in ("defaults", "schedules"):
            errors.append(f"{where}: {key}: unknown top-level key (expected defaults, schedules)")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        errors.append(f"{where}: defaults: expected a table")
        defaults = {}
    for key in defaults:
        if key not in DEFAULT_KEYS:
            errors.append(f"{where}: defaults.{key}: unknown key")
    schedules = document.get("schedules", {})
    if not isinstance(schedules, dict) or not schedules:
        errors.append(f"{where}: schedules: expected at least one [schedules.<name>] table")
        schedules = {}
    specs: dict[str, ScheduleSpec] = {}
    for name, table in schedules.items():
        spec = _parse_one(where, name, table, defaults, now, errors, fired_oneoffs or {}, past_oneoffs)
        if spec is not None:
            specs[name] = spec
    if errors:
        raise ScheduleError(errors, frozenset(past_oneoffs))
    return Schedule(path=path, specs=specs)


class _FieldErrors:
    """Collects errors for one schedule, each prefixed with file, schedule and field."""

    def __init__(self, where: str, name: str, errors: list[str]) -> None:
        self.prefix = f"{where}: schedules.{name}"
        self.errors = errors
        self.count = 0

    def add(self, key: str, message: str) -> None:
        self.errors.append(f"{self.prefix}.{key}: {message}" if key else f"{self.prefix}: {message}")
        self.count += 1

    def check(self, key: str, value: Any, convert: Callable[[Any], Any]) -> Any:
        """Convert `value`; record the error and return None when it is invalid."""
        try:
            return convert(value)
        except (TriggerError, ValueError, TypeError) as exc:
            self.add(key, str(exc))
            return None


def _parse_one(
    where: str,
    name: str,
    table: Any,
    defaults: Mapping[str, Any],
    now: datetime,
    errors: list[str],
    fired_oneoffs: Mapping[str, int],
    past_oneoffs: set[str],
) -> ScheduleSpec | None:
    fe = _FieldErrors(where, name, errors)
    if not NAME_PATTERN.match(name):
        fe.add("", "invalid name: use 1-64 of a-z, 0-9, '_', '-'")
    elif RUN_ID_LIKE.search(name):
        fe.add("", "invalid name: must not end in '-<digits>' (reserved for run ids)")
    if not isinstance(table, dict):
        fe.add("", "expected a table")
        return None
    for key in table:
        if key not in SCHEDULE_KEYS:
            fe.add(key, "unknown key")
    merged = {**BUILTIN_DEFAULTS, **defaults, **table}

    func = fe.check("func", table.get("func"), _check_func)
    timezone = fe.check("timezone", merged["timezone"], _check_zone)
    queue = fe.check("queue", merged["queue"], _check_queue)
    timeout = fe.check("timeout", merged["timeout"], _seconds)
    retries = fe.check("retries", merged["retries"], _non_negative_int)
    backoff = fe.check("retry_backoff", merged["retry_backoff"], _backoff)
    misfire = fe.check("misfire", merged["misfire"], _choice(MISFIRE_POLICIES))
    grace = fe.check("misfire_grace", merged["misfire_grace"], _seconds)
    overlap = fe.check("overlap", merged["overlap"], _choice(OVERLAP_POLICIES))
    enabled = fe.check("enabled", merged["enabled"], _bool)
    pause_after = fe.check("pause_after_failures", merged["pause_after_failures"], _non_negative_int)
    description = fe.check("description", table.get("description", ""), _string)
    args = fe.check("args", table.get("args", []), _json_list)
    kwargs = fe.check("kwargs", table.get("kwargs", {}), _json_table)

    declared = [key for key in TRIGGER_KEYS if key in table]
    trigger: Trigger | None = None
    if len(declared) != 1:
        found = ", ".join(declared) if declared else "none"
        fe.add("", f"exactly one of cron, every, at is required (found {found})")
    elif timezone is not None:
        key = declared[0]
        trigger = fe.check(key, table[key], _trigger_parser(key, ZoneInfo(timezone)))

    if trigger is not None and timezone is not None and enabled:
        zone = ZoneInfo(timezone)
        if isinstance(trigger, OneOffTrigger) and next_fire(trigger, zone, now) is None:
            # Done, not a mistake, when the scheduler recorded running this very instant.
            if fired_oneoffs.get(name) != int(one_off_instant(trigger, zone).timestamp()):
                fe.add("at", f"{trigger.at.isoformat()} is in the past; remove it or set enabled = false")
                past_oneoffs.add(name)
        if overlap == "skip" and timeout is not None:
            gap = _shortest_gap(trigger, zone, now)
            if gap is not None and timeout > gap:
                fe.add(
                    "timeout",
                    f'{timeout}s is longer than the {gap}s between runs while overlap = "skip"; '
                    'shorten it or set overlap = "allow"',
                )
    if fe.count or trigger is None:  # no trigger means an error was recorded above
        return None
    return ScheduleSpec(
        name=name,
        func=func,
        trigger=trigger,
        timezone=timezone,
        queue=queue,
        timeout=timeout,
        retries=retries,
        retry_backoff=backoff,
        misfire=misfire,
        misfire_grace=grace,
        overlap=overlap,
        enabled=enabled,
        pause_after_failures=pause_after,
        description=description,
        args=tuple(args),
        kwargs=kwargs,
    )


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return value


def _seconds(value: Any) -> int:
    return int(parse_duration(_string(value)).total_seconds())


def _backoff(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected at least one duration")
    return tuple(_seconds(item) for item in items)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    return convert


def _check_zone(value: Any) -> str:
    name = _string(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like Asia/Shanghai)") from None
    return name


def _check_queue(value: Any) -> str:
    name = _string(value)
    if not QUEUE_PATTERN.match(name):
        raise ValueError(f"invalid queue name {name!r}")
    return name


def _check_func(value: Any) -> str:
    """The dotted path must name a callable inside the `jobs` package."""
    if value is None:
        raise ValueError("required (a dotted path like jobs.system.health_check)")
    path = _string(value)
    module_name, _, attr = path.rpartition(".")
    if not module_name or not (module_name == JOBS_PACKAGE or module_name.startswith("jobs.")):
        raise ValueError(f"{path!r} is outside the jobs package")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    target = getattr(module, attr, None)
    if not callable(target):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return path


def _json_compatible(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except TypeError as exc:
        raise TypeError(f"only JSON-compatible values are allowed: {exc}") from None


def _json_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return _json_compatible(value)


def _json_table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table, got {type(value).__name__}")
    if "scheduled_for" in value:
        raise ValueError("scheduled_for is reserved: Cronwork passes the tick itself")
    return _json_compatible(value)


def _trigger_parser(key: str, zone: ZoneInfo) -> Callable[[Any], Trigger]:
    def parse(value: Any) -> Trigger:
        if key == "cron":
            return CronTrigger.parse(_string(value))
        if key == "every":
            return IntervalTrigger.create(parse_duration(_string(value)), zone)
        return OneOffTrigger(at=_local_datetime(value))

    return parse


def _local_datetime(value: Any) -> datetime:
    """A TOML local datetime or an ISO string without offset: the zone is the schedule's."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a local date-time like 2026-12-25T10:00:00, got {value!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a local date-time, got {type(value).__name__}")
    if value.tzinfo is not None:
        raise ValueError("give a local time without offset; the zone comes from `timezone`")
    return value


def _shortest_gap(trigger: Trigger, zone: ZoneInfo, now: datetime) -> int | None:
    """Seconds between the closest two upcoming runs (None for a one-off)."""
    if isinstance(trigger, IntervalTrigger):
        return int(trigger.every.total_seconds())
    if isinstance(trigger, OneOffTrigger):
        return None
    times = fire_times(trigger, zone, now, CRON_GAP_SAMPLES)
    gaps = [int((b - a).total_seconds()) for a, b in zip(times, times[1:], strict=False)]
    return min(gaps) if gaps else None
