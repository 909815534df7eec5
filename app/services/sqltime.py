"""Dialect-aware SQL for instants: epoch milliseconds of a datetime column, computed in SQL.

SQLite keeps datetimes as text ('YYYY-MM-DD HH:MM:SS.ffffff') with no date arithmetic on
it, PostgreSQL as `timestamp`; set-based statements that compare durations (elapsed over
window) need one number per instant on both. Milliseconds are exact integers on both
(SQLite's julianday() works in whole milliseconds internally), so a ratio at a boundary
(80 % of a window) compares exactly instead of landing at 79.99999999.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
JULIAN_DAY_OF_EPOCH = 2440587.5
MS_PER_DAY = 86_400_000


class epoch_ms(FunctionElement[float]):
    """`epoch_ms(column)`: milliseconds since 1970-01-01 UTC of a UTC datetime, in SQL."""

    type = Float()
    name = "epoch_ms"
    inherit_cache = True


@compiles(epoch_ms, "sqlite")
def _epoch_ms_sqlite(element: epoch_ms, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"round((julianday({arg}) - {JULIAN_DAY_OF_EPOCH}) * {MS_PER_DAY}.0)"


@compiles(epoch_ms, "postgresql")
def _epoch_ms_postgresql(element: epoch_ms, compiler: Any, **kw: Any) -> str:
    # The columns are `timestamp without time zone` holding UTC: EXTRACT reads them as UTC.
    arg = compiler.process(element.clauses, **kw)
    return f"(EXTRACT(EPOCH FROM {arg}) * 1000)"


@compiles(epoch_ms)
def _epoch_ms_other(element: epoch_ms, compiler: Any, **kw: Any) -> str:
    raise CompileError(f"epoch_ms() is not implemented for dialect {compiler.dialect.name!r}")


def to_epoch_ms(instant: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, exactly (no float rounding)."""
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: pass an aware datetime")
    return (instant - EPOCH) // timedelta(milliseconds=1)
