"""Next-fire computation for cron, interval and one-off triggers, on a zone's wall clock."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

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
        return _next_cron(trigger, zone, after)
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


def format_duration(duration: timedelta) -> str:
    """The inverse of parse_duration: 5400 s -> "1h30m"."""
    rest = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


def _validate_cron(expression: str) -> None:
    """Raise TriggerError naming what is wrong with `expression`."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        hint = " (aliases like @daily are not supported)" if expression.startswith("@") else ""
        raise TriggerError(f"expected 5 or 6 fields, got {len(fields)}{hint}")
    seconds = len(fields) == 6
    if croniter.is_valid(expression, second_at_beginning=seconds):
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


def _next_cron(trigger: CronTrigger, zone: ZoneInfo, after: datetime) -> datetime | None:
    """First fire of a cron trigger after `after` (UTC), following the DST rules."""
    # A fall-back may map a wall time earlier than after's own to an instant later than it
    # (01:30 EST comes after 01:45 EDT): start from the wall clock of the smaller offset.
    shift = min(_offset(after, zone), _offset(after + _DAY, zone))
    start = (after + shift).replace(tzinfo=None, microsecond=0) - _SECOND
    walls = croniter(trigger.expression, start, second_at_beginning=trigger.has_seconds)
    both_folds = trigger.fires_each_repeated_hour
    best: datetime | None = None
    while True:
        try:
            wall: datetime = walls.get_next(datetime)
        except CroniterBadDateError:  # no match within croniter's 50-year horizon
            return best
        # Folds make wall -> instant non-monotonic, but never by more than the largest
        # offset just before `best`: past that wall no candidate can beat it.
        if best is not None:
            largest = max(_offset(best - _DAY, zone), _offset(best, zone))
            if wall - largest > best.replace(tzinfo=None):
                return best
        for instant in _wall_instants(wall, zone, both_folds):
            if instant > after and (best is None or instant < best):
                best = instant


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
