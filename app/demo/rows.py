"""Demo rows: the draws every builder shares and the bulk INSERT that stores them."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import insert, select

from app.extensions import db

Row = dict[str, Any]

INSERT_CHUNK = 10_000


def insert_rows(model: type[Any], rows: Iterable[Row]) -> int:
    """Bulk-insert `rows` in chunks (bounded memory for large N); return how many."""
    total = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, INSERT_CHUNK)):
        db.session.execute(insert(model), chunk)
        total += len(chunk)
    return total


def ids(model: type[Any]) -> list[int]:
    """Ids of the rows just inserted into an empty table, in order."""
    # Ids are never set by hand, so PostgreSQL sequences stay in step with the data.
    return list(db.session.scalars(select(model.id).order_by(model.id)))


def scenarios(rng: random.Random, weights: dict[str, int], n: int) -> Iterator[str]:
    """Every scenario once (as far as `n` allows), then weighted draws."""
    names = list(weights)
    yield from names[:n]
    if n > len(names):
        yield from rng.choices(names, weights=list(weights.values()), k=n - len(names))


def ago(now: datetime, rng: random.Random, low: timedelta, high: timedelta) -> datetime:
    """A whole-second instant between `low` and `high` before `now`."""
    return now - timedelta(seconds=round(rng.uniform(low.total_seconds(), high.total_seconds())))
