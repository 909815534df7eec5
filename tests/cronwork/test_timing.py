"""Tests for cronwork.timing: cron on the local wall clock, DST, intervals, one-offs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from cronwork.timing import (
    CronTrigger,
    IntervalTrigger,
    OneOffTrigger,
    TriggerError,
    fire_times,
    format_duration,
    next_fire,
    parse_duration,
)

NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
UTC_ZONE = ZoneInfo("UTC")


def utc(*parts: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*parts, tzinfo=UTC)


def cron_times(expression: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """Fire times of a cron expression."""
    return fire_times(CronTrigger.parse(expression), zone, after, count)


# --- cron on the local wall clock ---------------------------------------------------------


def test_daily_cron_runs_on_the_zone_wall_clock() -> None:
    assert cron_times("0 2 * * *", SHANGHAI, utc(2026, 6, 1), 2) == [
        utc(2026, 6, 1, 18),
        utc(2026, 6, 2, 18),
    ]


def test_six_fields_put_seconds_first() -> None:
    fire = next_fire(CronTrigger.parse("20 3 1 * * *"), SHANGHAI, utc(2026, 6, 1))
    assert fire == utc(2026, 6, 1, 17, 3, 20)
    assert fire.astimezone(SHANGHAI).time().isoformat() == "01:03:20"


def test_hourly_cron_fires_on_the_hour() -> None:
    times = cron_times("0 * * * *", SHANGHAI, utc(2026, 6, 1, 10, 7, 13), 24)
    assert times[0] == utc(2026, 6, 1, 11)
    assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(times))


def test_results_are_utc_whatever_zone_after_is_in() -> None:
    trigger = CronTrigger.parse("0 2 * * *")
    local_after = utc(2026, 6, 1).astimezone(NEW_YORK)
    fire = next_fire(trigger, SHANGHAI, local_after)
    assert fire == next_fire(trigger, SHANGHAI, utc(2026, 6, 1))
    assert fire is not None and fire.tzinfo is UTC


@pytest.mark.parametrize("zone", [SHANGHAI, UTC_ZONE])
def test_zone_without_dst_fires_every_24_hours_all_year(zone: ZoneInfo) -> None:
    times = cron_times("30 2 * * *", zone, utc(2026, 1, 1), 366)
    assert {later - earlier for earlier, later in pairwise(times)} == {timedelta(days=1)}
    assert {time.astimezone(zone).strftime("%H:%M") for time in times} == {"02:30"}


def test_february_29_fires_only_in_leap_years() -> None:
    assert cron_times("0 0 29 2 *", NEW_YORK, utc(2026, 3, 8), 3) == [
        utc(2028, 2, 29, 5),
        utc(2032, 2, 29, 5),
        utc(2036, 2, 29, 5),
    ]


# --- DST: America/New_York springs forward on 2026-03-08 02:00, falls back on 2026-11-01 02:00


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # 02:30 does not exist: once, at 03:00 EDT.
        ("30 2 * * *", [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]),
        ("30 1 * * *", [utc(2026, 3, 7, 6, 30), utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)]),
        (
            "30 * * * *",
            [
                utc(2026, 3, 8, 5, 30),
                utc(2026, 3, 8, 6, 30),
                utc(2026, 3, 8, 7),
                utc(2026, 3, 8, 7, 30),
            ],
        ),
        # Four candidates inside the gap collapse into one fire.
        ("*/15 2 * * *", [utc(2026, 3, 7, 7, 45), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6)]),
        ("0 */2 * * *", [utc(2026, 3, 8, 5), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]),
    ],
)
def test_spring_forward_new_york(expression: str, expected: list[datetime]) -> None:
    start = expected[0] - timedelta(seconds=1)
    assert cron_times(expression, NEW_YORK, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "30 2 * * *",
            [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)],
        ),
        # 01:30 happens twice: a fixed hour fires on the first occurrence only.
        (
            "30 1 * * *",
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        ("0 1,2 * * *", [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 2, 6)]),
        # A wildcard or step hour fires in each real hour.
        (
            "30 * * * *",
            [
                utc(2026, 11, 1, 4, 30),
                utc(2026, 11, 1, 5, 30),
                utc(2026, 11, 1, 6, 30),
                utc(2026, 11, 1, 7, 30),
            ],
        ),
        ("0 */1 * * *", [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]),
        ("0 1-5/2 * * *", [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 8)]),
        (
            "*/15 2 * * *",
            [
                utc(2026, 11, 1, 7),
                utc(2026, 11, 1, 7, 15),
                utc(2026, 11, 1, 7, 30),
                utc(2026, 11, 1, 7, 45),
            ],
        ),
        ("0 */2 * * *", [utc(2026, 11, 1, 4), utc(2026, 11, 1, 7), utc(2026, 11, 1, 9)]),
    ],
)
def test_fall_back_new_york(expression: str, expected: list[datetime]) -> None:
    start = expected[0] - timedelta(seconds=1)
    assert cron_times(expression, NEW_YORK, start, len(expected)) == expected


def test_fall_back_second_pass_is_found_from_inside_the_first() -> None:
    # 01:45 EDT is after 01:30 EDT but before 01:30 EST: the wall clock went backwards.
    after = utc(2026, 11, 1, 5, 45)
    assert next_fire(CronTrigger.parse("30 * * * *"), NEW_YORK, after) == utc(2026, 11, 1, 6, 30)
    assert next_fire(CronTrigger.parse("30 1 * * *"), NEW_YORK, after) == utc(2026, 11, 2, 6, 30)


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # London: 01:00 GMT -> 02:00 BST on 2026-03-29, 02:00 BST -> 01:00 GMT on 2026-10-25.
        (LONDON, "30 1 * * *", utc(2026, 3, 28, 2), [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]),
        (
            LONDON,
            "30 1 * * *",
            utc(2026, 10, 24, 2),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            LONDON,
            "30 * * * *",
            utc(2026, 10, 25, 0),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)],
        ),
        # Sydney: DST ends 2026-04-05 03:00 AEDT -> 02:00 AEST, starts 2026-10-04 02:00 -> 03:00.
        (
            SYDNEY,
            "30 2 * * *",
            utc(2026, 4, 4, 0),
            [utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)],
        ),
        (
            SYDNEY,
            "30 * * * *",
            utc(2026, 4, 4, 14, 45),
            [utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30), utc(2026, 4, 4, 17, 30)],
        ),
        (
            SYDNEY,
            "30 2 * * *",
            utc(2026, 10, 3, 0),
            [utc(2026, 10, 3, 16), utc(2026, 10, 4, 15, 30)],
        ),
        # Lord Howe shifts by 30 minutes: 02:00 (+11) -> 01:30 (+10:30), and 02:00 -> 02:30 (+11).
        (
            LORD_HOWE,
            "45 1 * * *",
            utc(2026, 4, 4, 0),
            [utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)],
        ),
        (
            LORD_HOWE,
            "*/15 * * * *",
            utc(2026, 4, 4, 14, 20),
            [
                utc(2026, 4, 4, 14, 30),
                utc(2026, 4, 4, 14, 45),
                utc(2026, 4, 4, 15),
                utc(2026, 4, 4, 15, 15),
                utc(2026, 4, 4, 15, 30),
            ],
        ),
        (
            LORD_HOWE,
            "15 2 * * *",
            utc(2026, 10, 3, 0),
            [utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)],
        ),
    ],
)
def test_dst_in_other_zones(
    zone: ZoneInfo, expression: str, after: datetime, expected: list[datetime]
) -> None:
    assert cron_times(expression, zone, after, len(expected)) == expected


# --- cron validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "expected 5 or 6 fields, got 3"),
        ("* * * * * * *", "expected 5 or 6 fields, got 7"),
        ("", "expected 5 or 6 fields, got 0"),
        ("@daily", "aliases like @daily are not supported"),
        ("61 * * * *", "minute '61' is not valid (expected 0-59)"),
        ("0 24 * * *", "hour '24' is not valid (expected 0-23)"),
        ("60 * * * * *", "second '60' is not valid (expected 0-59)"),
        ("a b c d e", "minute 'a' is not valid"),
        ("0 0 * * 8", "day-of-week '8' is not valid"),
        ("*/0 * * * *", "minute '*/0' is not valid"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_invalid_cron_is_a_trigger_error_saying_why(expression: str, message: str) -> None:
    with pytest.raises(TriggerError, match=re.escape(message)):
        CronTrigger.parse(expression)


def test_invalid_cron_names_every_bad_field() -> None:
    with pytest.raises(TriggerError) as raised:
        CronTrigger.parse("a b c d e")
    for name in ("minute 'a'", "hour 'b'", "day-of-month 'c'", "month 'd'", "day-of-week 'e'"):
        assert name in str(raised.value)


def test_trigger_error_is_a_value_error_and_non_strings_are_rejected() -> None:
    assert issubclass(TriggerError, ValueError)
    with pytest.raises(TriggerError, match="expected a cron string"):
        CronTrigger.parse(5)  # type: ignore[arg-type]


def test_parse_normalises_spacing_and_describes() -> None:
    trigger = CronTrigger.parse("  0   *\t* * * ")
    assert trigger == CronTrigger("0 * * * *")
    assert trigger.describe() == "cron 0 * * * *"


# --- interval triggers ----------------------------------------------------------------------


def test_interval_is_anchored_with_zero_drift_tick_to_tick() -> None:
    trigger = IntervalTrigger.create(timedelta(minutes=30), SHANGHAI)
    ticks: list[datetime] = []
    tick = next_fire(trigger, SHANGHAI, utc(2026, 6, 1, 10, 7, 13, 500))
    while len(ticks) < 96:
        assert tick is not None
        ticks.append(tick)
        # A late scheduler computes from the tick plus its latency: still no drift.
        tick = next_fire(trigger, SHANGHAI, tick + timedelta(seconds=17))
    assert ticks[0] == utc(2026, 6, 1, 10, 30)
    assert ticks[-1] == utc(2026, 6, 3, 10)
    assert all(later - earlier == timedelta(minutes=30) for earlier, later in pairwise(ticks))
    assert all(tick.minute in (0, 30) and tick.second == tick.microsecond == 0 for tick in ticks)


def test_interval_is_elapsed_time_across_dst() -> None:
    trigger = IntervalTrigger.create(timedelta(days=1), NEW_YORK)
    times = fire_times(trigger, NEW_YORK, utc(2026, 3, 7), 3)
    assert times == [utc(2026, 3, 7, 5), utc(2026, 3, 8, 5), utc(2026, 3, 9, 5)]
    # Midnight EST anchor, so after the change it is 01:00 EDT.
    assert times[-1].astimezone(NEW_YORK).hour == 1


def test_interval_before_its_anchor_fires_at_the_anchor() -> None:
    anchor = datetime(2027, 1, 1, 9, tzinfo=SHANGHAI)
    trigger = IntervalTrigger(timedelta(hours=2), anchor)
    assert next_fire(trigger, SHANGHAI, utc(2026, 1, 1)) == utc(2027, 1, 1, 1)
    assert trigger.describe() == "every 2h from 2027-01-01T09:00:00+08:00"
    assert IntervalTrigger.create(timedelta(minutes=90), SHANGHAI).describe() == "every 1h30m"


@pytest.mark.parametrize(
    ("every", "anchor", "message"),
    [
        (timedelta(0), datetime(2000, 1, 1, tzinfo=UTC), "must be positive"),
        (timedelta(minutes=-5), datetime(2000, 1, 1, tzinfo=UTC), "must be positive"),
        (timedelta(seconds=1.5), datetime(2000, 1, 1, tzinfo=UTC), "whole seconds"),
        (timedelta(minutes=5), datetime(2000, 1, 1), "timezone-aware"),
    ],
)
def test_invalid_interval(every: timedelta, anchor: datetime, message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        IntervalTrigger(every, anchor)


# --- one-off triggers -----------------------------------------------------------------------


def test_one_off_fires_once_in_the_zone() -> None:
    trigger = OneOffTrigger(datetime(2026, 12, 25, 10))
    assert fire_times(trigger, SHANGHAI, utc(2026, 1, 1), 3) == [utc(2026, 12, 25, 2)]
    assert trigger.describe() == "once at 2026-12-25 10:00:00"


def test_one_off_in_the_past_never_fires() -> None:
    trigger = OneOffTrigger(datetime(2026, 12, 25, 10))
    assert next_fire(trigger, SHANGHAI, utc(2026, 12, 25, 2)) is None
    assert fire_times(trigger, SHANGHAI, utc(2027, 1, 1), 3) == []


def test_one_off_in_a_gap_or_a_fold() -> None:
    gap = OneOffTrigger(datetime(2026, 3, 8, 2, 30))
    fold = OneOffTrigger(datetime(2026, 11, 1, 1, 30))
    assert next_fire(gap, NEW_YORK, utc(2026, 1, 1)) == utc(2026, 3, 8, 7)
    assert next_fire(fold, NEW_YORK, utc(2026, 1, 1)) == utc(2026, 11, 1, 5, 30)


def test_one_off_must_be_a_wall_time() -> None:
    with pytest.raises(TriggerError, match="without an offset"):
        OneOffTrigger(datetime(2026, 12, 25, 10, tzinfo=UTC))


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        CronTrigger("0 * * * *"),
        IntervalTrigger.create(timedelta(minutes=5), SHANGHAI),
        OneOffTrigger(datetime(2026, 12, 25, 10)),
    ],
)
def test_naive_after_is_rejected(trigger: CronTrigger | IntervalTrigger | OneOffTrigger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(trigger, SHANGHAI, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_times(trigger, SHANGHAI, datetime(2026, 1, 1), 2)


def test_fire_times_count() -> None:
    trigger = CronTrigger("0 * * * *")
    assert fire_times(trigger, SHANGHAI, utc(2026, 1, 1), 0) == []
    with pytest.raises(ValueError, match="count"):
        fire_times(trigger, SHANGHAI, utc(2026, 1, 1), -1)


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["10x", "", "m", "1.5h", "-5m", "5 m", "30m1h", "1H", "10"])
def test_parse_duration_rejects_malformed(text: str) -> None:
    with pytest.raises(TriggerError, match="use e.g. 90s, 10m, 2h, 1d"):
        parse_duration(text)


def test_parse_duration_messages() -> None:
    with pytest.raises(TriggerError) as raised:
        parse_duration("10x")
    assert str(raised.value) == "invalid duration '10x': use e.g. 90s, 10m, 2h, 1d"
    with pytest.raises(TriggerError, match="must be greater than zero"):
        parse_duration("0h0m")
    with pytest.raises(TriggerError, match="use e.g."):
        parse_duration(300)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["90s", "1m30s", "10m", "2h", "1d", "1d1h1m1s"])
def test_format_duration_round_trips(text: str) -> None:
    expected = {"90s": "1m30s"}.get(text, text)
    assert format_duration(parse_duration(text)) == expected


# --- properties over DST transitions --------------------------------------------------------

PROPERTY_ZONES = [
    ZoneInfo(name)
    for name in (
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Shanghai",
        "UTC",
    )
]


def offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    """The UTC offset of `zone` at `instant`."""
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def transitions(zone: ZoneInfo, first: int, last: int) -> list[datetime]:
    """Every offset change of `zone` between the given years, found by day steps + bisection."""
    found = []
    day = utc(first, 1, 1)
    while day.year <= last:
        following = day + timedelta(days=1)
        if offset(day, zone) != offset(following, zone):
            low, high = day, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) // 2
                low, high = (middle, high) if offset(middle, zone) == offset(low, zone) else (low, middle)
            found.append(high)
        day = following
    return found


TRANSITIONS = {zone.key: transitions(zone, 2024, 2030) for zone in PROPERTY_ZONES}
# Bounds on each zone's offset, so a test can list every wall time that may fire in a window.
OFFSET_RANGE = {
    zone.key: (
        min(offset(utc(2020, 1, 1) + timedelta(days=day), zone) for day in range(366 * 16)),
        max(offset(utc(2020, 1, 1) + timedelta(days=day), zone) for day in range(366 * 16)),
    )
    for zone in PROPERTY_ZONES
}

SECONDS = st.sampled_from([None, None, None, "0", "30", "*/20", "5,45"])
MINUTES = st.sampled_from(["0", "30", "45", "15", "59", "*/15", "*/30", "0,30", "10-20/5", "*"])
HOURS = st.sampled_from(["*", "*/2", "*/1", "1-5/2", "0", "1", "2", "3", "23", "1,2", "0-3", "22-23"])
DAYS = st.sampled_from(["*", "*", "*", "*", "1", "*/2", "4-6"])
WEEKDAYS = st.sampled_from(["*", "*", "*", "0", "1-5"])


@st.composite
def cron_expressions(draw: st.DrawFn, hours: st.SearchStrategy[str] = HOURS) -> str:
    """A small cron expression, sometimes with a leading seconds field."""
    second = draw(SECONDS)
    fields = [draw(MINUTES), draw(hours), draw(DAYS), "*", draw(WEEKDAYS)]
    return " ".join(([second] if second else []) + fields)


@st.composite
def zones_and_starts(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A zone and an instant within a few hours of one of its transitions (any time without)."""
    zone = draw(st.sampled_from(PROPERTY_ZONES))
    near = TRANSITIONS[zone.key]
    if near:
        base = draw(st.sampled_from(near))
        return zone, base + timedelta(seconds=draw(st.integers(-4 * 3600, 4 * 3600)))
    return zone, utc(2026, 1, 1) + timedelta(seconds=draw(st.integers(0, 365 * 86400)))


def matches(expression: str, wall: datetime) -> bool:
    """Whether naive `wall` is one of the expression's wall times."""
    seconds = len(expression.split()) == 6
    walls = croniter(expression, wall - timedelta(seconds=1), second_at_beginning=seconds)
    return walls.get_next(datetime) == wall


def is_gap_end(instant: datetime, zone: ZoneInfo) -> bool:
    """Whether the clock jumps forward at `instant`."""
    return offset(instant - timedelta(seconds=1), zone) < offset(instant, zone)


def expected_fires(expression: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """Fires in (after, until], by mapping every wall time that can land there by the rules."""
    low, high = OFFSET_RANGE[zone.key]
    fields = expression.split()
    hour = fields[2 if len(fields) == 6 else 1]
    walls = croniter(
        expression,
        (after + low).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1),
        second_at_beginning=len(fields) == 6,
    )
    fires = set()
    wall = walls.get_next(datetime)
    while wall <= (until + high).replace(tzinfo=None):
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first <= second:
            fires.add(first)
            if hour == "*" or "/" in hour:
                fires.add(second)
        else:  # a gap: walk from the earlier reading until the clock has jumped
            jump = second.replace(second=0)
            while offset(jump, zone) == offset(second, zone):
                jump += timedelta(minutes=1)
            while offset(jump - timedelta(seconds=1), zone) != offset(second, zone):
                jump -= timedelta(seconds=1)
            fires.add(jump)
        wall = walls.get_next(datetime)
    return sorted(fire for fire in fires if after < fire <= until)


@settings(max_examples=200, deadline=None, database=None)
@given(place=zones_and_starts(), expression=cron_expressions())
def test_cron_fires_follow_the_dst_rules(place: tuple[ZoneInfo, datetime], expression: str) -> None:
    zone, after = place
    trigger = CronTrigger.parse(expression)
    times = fire_times(trigger, zone, after, 25)
    assert len(times) == 25
    assert all(time.tzinfo is UTC for time in times)
    assert after < times[0]
    assert all(earlier < later for earlier, later in pairwise(times))
    for time in times:
        wall = time.astimezone(zone).replace(tzinfo=None)
        assert matches(expression, wall) or is_gap_end(time, zone), (time, wall)
    # Stepping one fire at a time gives the same sequence.
    assert [next_fire(trigger, zone, time) for time in [after, *times[:-1]]] == times
    assert times == expected_fires(expression, zone, after, times[-1])
    if not trigger.fires_each_repeated_hour:
        walls = [time.astimezone(zone).replace(tzinfo=None) for time in times]
        assert len(set(walls)) == len(walls)


@settings(max_examples=100, deadline=None, database=None)
@given(
    place=zones_and_starts(),
    second=st.sampled_from([None, "0", "30"]),
    minute=st.sampled_from(["0", "15", "30", "45", "59"]),
    hour=st.sampled_from(["0", "1", "2", "3", "23"]),
)
def test_a_fixed_time_fires_at_most_once_a_local_day(
    place: tuple[ZoneInfo, datetime], second: str | None, minute: str, hour: str
) -> None:
    zone, after = place
    expression = " ".join(([second] if second else []) + [minute, hour, "*", "*", "*"])
    times = fire_times(CronTrigger.parse(expression), zone, after - timedelta(days=2), 6)
    dates = [time.astimezone(zone).date() for time in times]
    assert len(set(dates)) == len(dates) == 6


@settings(max_examples=100, deadline=None, database=None)
@given(
    every=st.integers(1, 3 * 86400).map(lambda seconds: timedelta(seconds=seconds)),
    zone=st.sampled_from(PROPERTY_ZONES),
    after=st.datetimes(datetime(2000, 1, 2), datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_interval_ticks_are_anchored(every: timedelta, zone: ZoneInfo, after: datetime) -> None:
    trigger = IntervalTrigger.create(every, zone)
    fire = next_fire(trigger, zone, after)
    assert fire is not None
    assert fire - every <= after < fire
    assert (fire - trigger.anchor) % every == timedelta(0)
