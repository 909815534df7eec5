"""The wall-time walk of plain cron expressions gives croniter's own sequence (issue 11)."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cronwork.timing import CronTrigger, TriggerError, _plain_fields, _walls

SECONDS = st.sampled_from([None, "0", "59", "*/20", "5,45", "*", "10-12", "0-59/7"])
MINUTES = st.sampled_from(["0", "59", "*/15", "0,30", "10-20/5", "*", "7", "*/7", "58-59"])
HOURS = st.sampled_from(["*", "*/2", "0", "23", "1,2", "0-3", "22-23", "5/6"])
DAYS = st.sampled_from(["*", "*", "1", "31", "29", "*/2", "13", "L", "15W", "1-5,L"])
MONTHS = st.sampled_from(["*", "*", "2", "jan-mar", "4,6,9,11", "*/5"])
WEEKDAYS = st.sampled_from(["*", "*", "0", "7", "5-7", "1-5", "sun", "fri", "1#2", "5#5"])
# Half the examples fire every day, half restrict the day (L, W and # are croniter's walk).
DAY_FIELDS = st.one_of(st.just(("*", "*", "*")), st.tuples(DAYS, MONTHS, WEEKDAYS))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    second = draw(SECONDS)
    fields = [draw(MINUTES), draw(HOURS), *draw(DAY_FIELDS)]
    return " ".join(([second] if second else []) + fields)


def croniter_walls(expression: str, start: datetime, count: int) -> list[datetime]:
    walls = croniter(expression, start, second_at_beginning=len(expression.split()) == 6)
    return [walls.get_next(datetime) for _ in range(count)]


@settings(max_examples=400, deadline=None, database=None)
@given(
    expression=expressions(),
    start=st.datetimes(datetime(2023, 12, 30), datetime(2031, 1, 2)).map(lambda t: t.replace(microsecond=0)),
)
def test_walls_are_croniters_sequence(expression: str, start: datetime) -> None:
    try:
        trigger = CronTrigger.parse(expression)
    except TriggerError:  # "0 0 31 2 *" never fires
        assume(False)
        raise
    assert list(islice(_walls(trigger, start), 30)) == croniter_walls(expression, start, 30)


@pytest.mark.parametrize(
    ("expression", "plain"),
    [
        ("* * * * *", True),
        ("30 5 * * * *", True),
        ("0 0 1,15 feb mon-fri", True),
        ("0 0 L * *", False),
        ("0 0 15W * *", False),
        ("0 0 * * 1#2", False),
    ],
)
def test_l_w_and_hash_are_left_to_croniter(expression: str, plain: bool) -> None:
    assert (_plain_fields(expression) is not None) is plain


def test_fast_walk_crosses_midnight_and_the_year() -> None:
    walls = list(islice(_walls(CronTrigger.parse("30 59 23 * * *"), datetime(2027, 12, 31, 23, 59, 30)), 2))
    assert walls == [datetime(2028, 1, 1, 23, 59, 30), datetime(2028, 1, 2, 23, 59, 30)]
    start = datetime(2028, 2, 28, 23, 59, 59)
    assert next(_walls(CronTrigger.parse("* * * * * *"), start)) == start + timedelta(seconds=1)
