"""The schedule file → frozen specs: pure (no clock, no Redis, no import of job code).

Validation is total: every problem in the file is collected, each reported on one line
naming the file, the schedule and the field, before anything reads or writes Redis. The
same file always gives the same specs, whatever the time and whatever Redis holds: a one-off
whose `at` has passed is valid here, and the sync plan reports it as `expired` (issue 10:
a parse that depended on the clock returned no schedules at all once a one-off passed).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronwork.ratelimit import RateLimit
from cronwork.spec import DEFAULT_KEEP_RUNS, OverlapPolicy, Schedule, ScheduleError, ScheduleSpec
from cronwork.timing import (
    CronTrigger,
    IntervalTrigger,
    OneOffTrigger,
    Trigger,
    TriggerError,
    fire_times,
    parse_duration,
)

NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
# A name ending in "-<digits>" could collide with a run id `<prefix>-<name>-<epoch>`.
RUN_ID_LIKE = re.compile(r"-\d+$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOBS_PACKAGE = "jobs"
# Modules of the jobs package that are the worker's own machinery, not jobs: a schedule (the
# file, a runtime schedule from the API) or a payload written into Redis that names something
# there is refused, e.g. `jobs.worker.cli.main`, which would start a worker inside a work horse.
NOT_JOB_MODULES = ("jobs.worker", "jobs.runtime", "jobs.outcomes", "jobs.overlap", "jobs.clip_worker")


def job_path_problem(path: str) -> str | None:
    """Why a dotted path cannot name a job function, from its name alone (None: it can)."""
    module = path.rpartition(".")[0]
    if not module or not (module == JOBS_PACKAGE or module.startswith(f"{JOBS_PACKAGE}.")):
        return f"{path!r} is outside the {JOBS_PACKAGE} package"
    if any(module == m or module.startswith(f"{m}.") for m in NOT_JOB_MODULES):
        return f"{path!r} is in the worker's own modules ({', '.join(NOT_JOB_MODULES)}), not a job"
    return None
TRIGGER_KEYS = ("cron", "every", "at")
MISFIRE_POLICIES = ("run_latest", "skip")
OVERLAP_POLICIES = tuple(policy.value for policy in OverlapPolicy)
# Fire times sampled to find a cron schedule's shortest gap (for the overlap/timeout rule),
# from a fixed instant rather than "now", so that the verdict never changes with the clock.
CRON_GAP_SAMPLES = 64
CRON_GAP_FROM = datetime(2026, 1, 1, tzinfo=UTC)
MAX_JITTER = 24 * 3600  # seconds: a delay longer than a day is a different schedule
# Bounds of keep_runs: at least the run being looked at; at most what the ops pages can list.
KEEP_RUNS_MIN, KEEP_RUNS_MAX = 1, 10_000

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
    "keep_runs": DEFAULT_KEEP_RUNS,
}
DEFAULT_KEYS = frozenset(BUILTIN_DEFAULTS)
# Per schedule only (not in [defaults]): a limit and a jitter are decisions about one job.
SCHEDULE_KEYS = DEFAULT_KEYS | {
    "func",
    "description",
    "args",
    "kwargs",
    *TRIGGER_KEYS,
    "rate_limit",
    "jitter",
}


def load_schedule(path: Path | str) -> Schedule:
    """Read and validate the schedule file; raises ScheduleError listing every problem."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScheduleError([f"{path}: file not found"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScheduleError([f"{path.name}: not valid TOML: {exc}"]) from None
    return parse_schedule(document, path)


def parse_schedule(document: Mapping[str, Any], path: Path) -> Schedule:
    """Validate a parsed TOML document; raises ScheduleError listing every problem."""
    errors: list[str] = []
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
    # Job modules are read once per parse, not once per schedule (issue 11); a later parse
    # reads them again, so an edited job module is seen by the next load.
    modules = _JobModules()
    for name, table in schedules.items():
        spec = _parse_one(where, name, table, defaults, errors, modules)
        if spec is not None:
            specs[name] = spec
    if errors:
        raise ScheduleError(errors)
    return Schedule(path=path, specs=specs)


def expired_message(path: Path | str, spec: ScheduleSpec) -> str:
    """How `--check` and the sync plan word a one-off whose `at` has passed."""
    assert isinstance(spec.trigger, OneOffTrigger)
    return (
        f"{Path(path).name}: schedules.{spec.name}.at: {spec.trigger.at.isoformat()} is in the past; "
        "remove it or set enabled = false"
    )


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
    errors: list[str],
    modules: _JobModules,
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

    func = fe.check("func", table.get("func"), modules.check_func)
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
    keep_runs = fe.check("keep_runs", merged["keep_runs"], _keep_runs)
    description = fe.check("description", table.get("description", ""), _string)
    args = fe.check("args", table.get("args", []), _json_list)
    kwargs = fe.check("kwargs", table.get("kwargs", {}), _json_table)
    rate_limit = None
    if "rate_limit" in table:
        rate_limit = fe.check("rate_limit", table["rate_limit"], RateLimit.parse)
    jitter = fe.check("jitter", table["jitter"], _seconds) if "jitter" in table else 0

    declared = [key for key in TRIGGER_KEYS if key in table]
    trigger: Trigger | None = None
    if len(declared) != 1:
        found = ", ".join(declared) if declared else "none"
        fe.add("", f"exactly one of cron, every, at is required (found {found})")
    elif timezone is not None:
        key = declared[0]
        trigger = fe.check(key, table[key], _trigger_parser(key, ZoneInfo(timezone)))

    if trigger is not None and timezone is not None and enabled and overlap == "skip" and timeout is not None:
        gap = _shortest_gap(trigger, timezone)
        if gap is not None and timeout > gap:
            fe.add(
                "timeout",
                f'{timeout}s is longer than the {gap}s between runs while overlap = "skip"; '
                'shorten it or set overlap = "allow"',
            )
    if jitter and jitter > MAX_JITTER:
        fe.add("jitter", f"{jitter}s is longer than the most allowed, {MAX_JITTER}s (1d)")
    elif trigger is not None and timezone is not None and jitter:
        gap = _shortest_gap(trigger, timezone)
        if gap is not None and jitter >= gap:
            # tick_of() finds a run's tick from its due instant only while they cannot interleave.
            fe.add("jitter", f"{jitter}s must be shorter than the {gap}s between runs")
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
        overlap=OverlapPolicy(overlap),
        enabled=enabled,
        pause_after_failures=pause_after,
        description=description,
        args=tuple(args),
        kwargs=kwargs,
        keep_runs=keep_runs,
        rate_limit=rate_limit,
        jitter=jitter,
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


def _keep_runs(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not KEEP_RUNS_MIN <= value <= KEEP_RUNS_MAX:
        raise ValueError(f"expected a whole number from {KEEP_RUNS_MIN} to {KEEP_RUNS_MAX}, got {value!r}")
    return value


def _seconds(value: Any) -> int:
    return _duration_seconds(_string(value))


@lru_cache(maxsize=1024)
def _duration_seconds(text: str) -> int:
    """A duration in whole seconds; cached, as every schedule repeats the same few (issue 11)."""
    return int(parse_duration(text).total_seconds())


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


class _JobModules:
    """What the job modules bind at top level, read from source once per module per parse."""

    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, str] | ValueError] = {}

    def check_func(self, value: Any) -> str:
        """The dotted path must name a function defined (`def`) in a job module of the `jobs`
        package: not a class, an imported name or the worker's own modules.

        Checked from the module's source, without importing it: importing a job module imports
        the Flask app and its models, which the scheduler process must not need (issue 10). A
        job module that fails at import time stops the worker at start (jobs.worker preloads
        them).
        """
        if value is None:
            raise ValueError("required (a dotted path like jobs.system.health_check)")
        path = _string(value)
        problem = job_path_problem(path)
        if problem is not None:
            raise ValueError(problem)
        module_name, _, attr = path.rpartition(".")
        kind = self._kinds_of(module_name).get(attr)
        if kind == "import":
            # What a job module imports (a library's function, another module's) is not a job.
            raise ValueError(f"{module_name!r} imports {attr!r}: name the function where it is defined")
        if kind != "function":
            raise ValueError(f"{module_name!r} has no callable {attr!r}")
        return path

    def _kinds_of(self, module_name: str) -> dict[str, str]:
        found = self._kinds.get(module_name)
        if found is None:
            try:
                found = _top_level_kinds(_module_tree(module_name))
            except ValueError as exc:
                found = exc
            self._kinds[module_name] = found
        if isinstance(found, ValueError):
            raise ValueError(str(found))
        return found


def _module_tree(module_name: str) -> ast.Module:
    """The parsed source of a module, found on the import path but never executed."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"cannot import {module_name!r}: no module named {module_name!r}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    try:
        return ast.parse(source, spec.origin)
    except SyntaxError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None


def _top_level_kinds(tree: ast.Module) -> dict[str, str]:
    """How a module binds each name at top level: function, class, import, value, constant.

    A name bound more than once takes the kind of its last binding in source order.
    """
    kinds: dict[str, str] = {}
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            kinds[node.name] = "class" if isinstance(node, ast.ClassDef) else "function"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                kinds[alias.asname or alias.name.split(".")[0]] = "import"
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            kind = "constant" if isinstance(node.value, ast.Constant) else "value"
            for target in targets:
                if isinstance(target, ast.Name):
                    kinds[target.id] = kind
    return kinds


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements executed at import: the body, and the bodies of top-level if/try blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


def accepts_keyword(func_path: str, keyword: str) -> bool | None:
    """Whether the job function `func_path` (a def in a jobs module) takes `keyword` or
    **kwargs, read from its source; None when that cannot be told without importing it."""
    module_name, _, attr = func_path.rpartition(".")
    try:
        tree = _module_tree(module_name)
    except ValueError:
        return None
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == attr:
            args = node.args
            names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
            return keyword in names or args.kwarg is not None
    return None


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


def _shortest_gap(trigger: Trigger, timezone: str) -> int | None:
    """Seconds between the closest two upcoming runs (None for a one-off)."""
    if isinstance(trigger, IntervalTrigger):
        return int(trigger.every.total_seconds())
    if isinstance(trigger, OneOffTrigger):
        return None
    return _cron_gap(trigger, timezone)


@lru_cache(maxsize=4096)
def _cron_gap(trigger: CronTrigger, timezone: str) -> int | None:
    """The shortest gap of a cron trigger in a zone: a few expressions recur across a large file
    and the sample costs ~1 ms each (issue 11), so each (expression, zone) is sampled once."""
    times = fire_times(trigger, ZoneInfo(timezone), CRON_GAP_FROM, CRON_GAP_SAMPLES)
    gaps = [int((b - a).total_seconds()) for a, b in zip(times, times[1:], strict=False)]
    return min(gaps) if gaps else None
