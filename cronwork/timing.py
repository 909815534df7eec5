"""Next-fire computation for cron, interval and one-off triggers, on a zone's wall clock."""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import TypeAlias
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT = "use e.g. 90s, 10m, 2h, 1d"
# (name, values) per field of a 5-field expression; '*', lists, ranges and steps of them apply.
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)
_SECOND_FIELD = ("second", "0-59")
# Distinct cron expressions kept parsed: a schedule file repeats a few expressions many times
# and the scheduler re-reads every definition; parsing one costs ~0.1 ms in croniter (issue 11).
_CRON_CACHE = 16384


class TriggerError(ValueError):
    """A trigger expression that cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class CronTrigger:
    """A cron expression: 5 fields, or 6 with seconds first, on the schedule zone's wall clock."""

    expression: str

    def __post_init__(self) -> None:
        _validate_cron(self.expression)

    @classmethod
    def parse(cls, expression: str) -> CronTrigger:
        """Validate `expression` and return it as a trigger with normalised spacing."""
        if not isinstance(expression, str):
            raise TriggerError(f"expected a cron string like '0 * * * *', got {expression!r}")
        return cls(" ".join(expression.split()))

    @property
    def has_seconds(self) -> bool:
        """Whether the expression has a leading seconds field."""
        return len(self.expression.split()) == 6

    @property
    def fires_each_repeated_hour(self) -> bool:
        """Whether an hour repeated at fall-back fires twice (hour field is `*` or a step)."""
        hour = self.expression.split()[2 if self.has_seconds else 1]
        return hour == "*" or "/" in hour

    def describe(self) -> str:
        """Short human text."""
        return f"cron {self.expression}"


@dataclass(frozen=True)
class IntervalTrigger:
    """Every `every` of elapsed time, on ticks anchor + n·every (n ≥ 0)."""

    every: timedelta
    anchor: datetime

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise TriggerError(f"interval must be positive, got {self.every}")
        if self.every % _SECOND:
            raise TriggerError(f"interval must be whole seconds, got {self.every}")
        if self.anchor.utcoffset() is None:
            raise TriggerError("interval anchor must be timezone-aware")

    @classmethod
    def create(cls, every: timedelta, zone: ZoneInfo) -> IntervalTrigger:
        """An interval anchored at 2000-01-01T00:00 in `zone`: ticks land on round local times."""
        return cls(every, datetime(2000, 1, 1, tzinfo=zone))

    def describe(self) -> str:
        """Short human text."""
        text = f"every {format_duration(self.every)}"
        if self.anchor != datetime(2000, 1, 1, tzinfo=self.anchor.tzinfo):
            text += f" from {self.anchor.isoformat()}"
        return text


@dataclass(frozen=True)
class OneOffTrigger:
    """Once, at a naive local wall time in the schedule's zone."""

    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is not None:
            raise TriggerError("one-off time must be a local wall time without an offset")

    def describe(self) -> str:
        """Short human text."""
        return f"once at {self.at.isoformat(sep=' ')}"


Trigger: TypeAlias = CronTrigger | IntervalTrigger | OneOffTrigger


def next_fire(trigger: Trigger, zone: ZoneInfo, after: datetime) -> datetime | None:
    """First fire instant strictly after `after` (aware), in UTC; None if it never fires again."""
    if after.utcoffset() is None:
        raise ValueError(f"after must be timezone-aware, got naive {after.isoformat()}")
    # Aware arithmetic between datetimes sharing one tzinfo is wall-clock arithmetic:
    # everything below works on UTC to stay in elapsed time.
    after = after.astimezone(UTC)
    if isinstance(trigger, CronTrigger):
        return next(_cron_fires(trigger, zone, after), None)
    if isinstance(trigger, IntervalTrigger):
        anchor = trigger.anchor.astimezone(UTC)
        if after < anchor:
            return anchor
        return anchor + ((after - anchor) // trigger.every + 1) * trigger.every
    fire = one_off_instant(trigger, zone)
    return fire if fire > after else None


def one_off_instant(trigger: OneOffTrigger, zone: ZoneInfo) -> datetime:
    """The instant a one-off fires at (past or future), in UTC."""
    return _wall_instants(trigger.at, zone, both_folds=False)[0]


def fire_times(trigger: Trigger, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants after `after`, UTC, strictly increasing."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if isinstance(trigger, CronTrigger):
        # One walk over the wall times rather than `count` walks from each fire (issue 11).
        if after.utcoffset() is None:
            raise ValueError(f"after must be timezone-aware, got naive {after.isoformat()}")
        return list(islice(_cron_fires(trigger, zone, after.astimezone(UTC)), count))
    times: list[datetime] = []
    fire = next_fire(trigger, zone, after) if count else None
    while fire is not None:
        times.append(fire)
        if len(times) == count:
            break
        fire = next_fire(trigger, zone, fire)
    return times


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "10m", "2h", "1d" or a compound like "1h30m" into a positive timedelta."""
    if not isinstance(text, str):
        raise TriggerError(f"invalid duration {text!r}: {_DURATION_HINT}")
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise TriggerError(f"invalid duration '{text}': {_DURATION_HINT}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise TriggerError(f"invalid duration '{text}': too long") from None
    if not duration:
        raise TriggerError(f"invalid duration '{text}': must be greater than zero")
    return duration


_UNITS = (("d", "day", 86400), ("h", "hour", 3600), ("m", "minute", 60), ("s", "second", 1))


def format_duration(
    duration: timedelta | float, *, largest: int | None = None, fraction: bool = False, words: bool = False
) -> str:
    """A duration as text; the one formatter of the schedule file, the pages and the CLI.

    By default the inverse of parse_duration: 5400 s -> "1h30m". `largest=2` keeps the two
    largest units (7805 s -> "2h10m"); `fraction` shows what is under a minute as "850ms" or
    "1.5s" (to 0.1 s under 10 s); `words` spells units out: "1 hour 30 minutes".

    Args:
        duration: a timedelta, or seconds (negative values are formatted by their size).
    """
    seconds = abs(duration.total_seconds() if isinstance(duration, timedelta) else float(duration))
    if fraction and seconds < 60 and not words:
        if seconds < 1:
            return f"{seconds * 1000:.0f}ms"
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    rest = int(seconds)
    parts = []
    for short, long, size in _UNITS:
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount} {long}{'s' if amount > 1 else ''}" if words else f"{amount}{short}")
    parts = parts[:largest] if largest else parts
    if not parts:
        return "0 seconds" if words else "0s"
    return " ".join(parts) if words else "".join(parts)


@lru_cache(maxsize=_CRON_CACHE)
def _validate_cron(expression: str) -> None:
    """Raise TriggerError naming what is wrong with `expression`."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        hint = " (aliases like @daily are not supported)" if expression.startswith("@") else ""
        raise TriggerError(f"expected 5 or 6 fields, got {len(fields)}{hint}")
    seconds = len(fields) == 6
    if _expansion(expression) is not None:
        plain = _plain_fields(expression)
        if plain is not None and plain.days is None and plain.months is None:
            return  # plain values without a day-of-month or a month: some day of every week fires
        try:
            start = datetime(2000, 1, 1, tzinfo=UTC)
            croniter(expression, start, second_at_beginning=seconds).get_next()
        except CroniterBadDateError:
            raise TriggerError(f"'{expression}' never fires: no date matches it") from None
        return
    # croniter's own messages name neither the field nor the allowed values: check each
    # field alone against wildcards to point at the culprit.
    names = ((_SECOND_FIELD,) if seconds else ()) + _FIELDS
    problems = []
    for index, (field, (name, allowed)) in enumerate(zip(fields, names, strict=True)):
        alone = ["*"] * len(fields)
        alone[index] = field
        if not croniter.is_valid(" ".join(alone), second_at_beginning=seconds):
            problems.append(f"{name} '{field}' is not valid (expected {allowed})")
    raise TriggerError("; ".join(problems) or f"'{expression}' is not a valid cron expression")


@lru_cache(maxsize=_CRON_CACHE)
def _expansion(expression: str) -> tuple[tuple[int | str, ...], ...] | None:
    """croniter's expanded fields of a 5- or 6-field expression; None when it is not valid.

    The same test as croniter.is_valid (expand raising CroniterError), done once per expression.
    """
    try:
        expanded, nth_weekday = croniter.expand(expression, second_at_beginning=len(expression.split()) == 6)
    except CroniterError:
        return None
    fields: list[tuple[int | str, ...]] = [tuple(values) for values in expanded]
    if nth_weekday:  # "1#2": the second Monday; kept apart from the fields by croniter
        fields[4] = ("#",)
    return tuple(fields)


@dataclass(frozen=True)
class _Fields:
    """A cron expression as plain values, walked without croniter; None means any."""

    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # 0 = Sunday, as croniter numbers them

    def matches(self, day: datetime) -> bool:
        """Whether the expression fires on `day`: croniter's rule, where a day-of-month and a
        day-of-week both given match either (cron's OR), and otherwise both must match."""
        if self.months is not None and day.month not in self.months:
            return False
        on_day = self.days is None or day.day in self.days
        on_weekday = self.weekdays is None or day.isoweekday() % 7 in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return on_day or on_weekday
        return on_day and on_weekday


@lru_cache(maxsize=_CRON_CACHE)
def _plain_fields(expression: str) -> _Fields | None:
    """The expression's values when every field is a plain set of numbers; None when it uses
    L, W or # (croniter walks those)."""
    expanded = _expansion(expression)
    fields = expression.split()
    if expanded is None or "w" in fields[-3].lower():  # "15W": nearest weekday, not in `expanded`
        return None
    # croniter orders the fields minute, hour, day-of-month, month, day-of-week[, second].
    minutes, hours, days, months, weekdays, *rest = expanded
    seconds = rest[0] if rest else (0,)
    if not all(value == "*" or isinstance(value, int) for field in expanded for value in field):
        return None

    def values(field: tuple[int | str, ...], size: int) -> tuple[int, ...]:
        return tuple(range(size)) if field == ("*",) else tuple(sorted({int(value) for value in field}))

    def restriction(field: tuple[int | str, ...]) -> frozenset[int] | None:
        return None if field == ("*",) else frozenset(int(value) for value in field)

    return _Fields(
        hours=values(hours, 24),
        minutes=values(minutes, 60),
        seconds=values(seconds, 60),
        days=restriction(days),
        months=restriction(months),
        weekdays=restriction(weekdays),
    )


def _walls(trigger: CronTrigger, start: datetime) -> Iterator[datetime]:
    """The expression's naive wall times strictly after naive `start`, in order: croniter's
    sequence, computed without croniter (~50x faster) unless the expression uses L, W or #."""
    fields = _plain_fields(trigger.expression)
    if fields is not None:
        yield from _plain_walls(fields, start)
        return
    walls = croniter(trigger.expression, start, second_at_beginning=trigger.has_seconds)
    while True:
        try:
            yield walls.get_next(datetime)
        except CroniterBadDateError:  # no match within croniter's 50-year horizon
            return


def _plain_walls(fields: _Fields, start: datetime) -> Iterator[datetime]:
    """Each matching day's hours x minutes x seconds, in order, strictly after naive `start`."""
    hours, minutes, seconds = fields.hours, fields.minutes, fields.seconds
    every_day = fields.days is None and fields.months is None and fields.weekdays is None
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    first = (start.hour, start.minute, start.second)
    while True:
        if every_day or fields.matches(day):
            for hour in hours[bisect_left(hours, first[0]) :]:
                in_first_hour = hour == first[0]
                for minute in minutes[bisect_left(minutes, first[1]) :] if in_first_hour else minutes:
                    if in_first_hour and minute == first[1]:
                        tail = seconds[bisect_right(seconds, first[2]) :]
                    else:
                        tail = seconds
                    for second in tail:
                        yield day + timedelta(hours=hour, minutes=minute, seconds=second)
        first = (-1, -1, -1)
        day += _DAY


def _cron_fires(trigger: CronTrigger, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The fires of a cron trigger strictly after `after` (UTC), in order, following the DST rules."""
    # A fall-back may map a wall time earlier than after's own to an instant later than it
    # (01:30 EST comes after 01:45 EDT): start from the wall clock of the smaller offset.
    shift = min(_offset(after, zone), _offset(after + _DAY, zone))
    start = (after + shift).replace(tzinfo=None, microsecond=0) - _SECOND
    both_folds = trigger.fires_each_repeated_hour
    pending: list[datetime] = []  # heap of the candidates after the last fire given
    last = after
    for wall in _walls(trigger, start):
        # Folds make wall -> instant non-monotonic, but never by more than the largest
        # offset just before the earliest candidate: past that wall no later one can beat it.
        while pending:
            best = pending[0]
            largest = max(_offset(best - _DAY, zone), _offset(best, zone))
            if wall - largest <= best.replace(tzinfo=None):
                break
            last = heapq.heappop(pending)
            yield last
        for instant in _wall_instants(wall, zone, both_folds):
            if instant > last and instant not in pending:
                heapq.heappush(pending, instant)
    while pending:  # no later wall within croniter's 50-year horizon
        yield heapq.heappop(pending)


def _wall_instants(wall: datetime, zone: ZoneInfo, both_folds: bool) -> tuple[datetime, ...]:
    """The UTC instants at which naive `wall` fires in `zone` (gap -> transition, fold -> first)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return (first,)
    if first < second:  # fall-back: the wall time happens twice
        return (first, second) if both_folds else (first,)
    # Spring-forward gap (PEP 495 gives fold=0 the offset before the transition, so it lands
    # after it): the wall time never shows, fire at the first instant that exists.
    return (_transition(second, first, zone),)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (before, after] where `zone` leaves before's offset, by bisection."""
    # Bisection rather than "after minus the DST shift" so 30-minute shifts (Lord Howe) and
    # odd historical offsets need no table; tzdata transitions fall on whole seconds.
    old = _offset(before, zone)
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(datetime.fromtimestamp(middle, UTC), zone) == old:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    """The UTC offset of `zone` at aware `instant`."""
    # A ZoneInfo always has an offset; `or` only satisfies the Optional in the signature.
    return instant.astimezone(zone).utcoffset() or timedelta(0)
