"""Backfill a registered schedule over a past range (the CLI and the API share this).

The ticks are the schedule's own, in its zone; each is enqueued once by cronwork.backfill
(which says what "once" means). Times without an offset are read in the schedule's zone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from redis import Redis

from app.extensions import cronwork
from cronwork.backfill import DEFAULT_MAX_TICKS, Backfiller, BackfillError, BackfillResult, ticks_in_range
from cronwork.keys import Keys
from cronwork.spec import ScheduleSpec

log = logging.getLogger(__name__)


def backfill(
    spec: ScheduleSpec,
    start: Any,
    end: Any,
    *,
    dry_run: bool = False,
    connection: Redis | None = None,
    keys: Keys | None = None,
    max_ticks: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackfillResult:
    """Enqueue (or, dry, list) the ticks of `spec` from `start` to `end`, both included.

    BackfillError (nothing enqueued) for a bad or future range, or more ticks than allowed."""
    first = parse_instant("from", start, spec)
    last = parse_instant("to", end, spec)
    now = clock()
    if last > now:
        raise BackfillError(f"'to' ({last.isoformat()}) is in the future: backfill covers past ticks only")
    limit = (
        max_ticks
        if max_ticks is not None
        else current_app.config.get("BACKFILL_MAX_TICKS", DEFAULT_MAX_TICKS)
    )
    ticks = ticks_in_range(spec, first, last, limit)
    backfiller = Backfiller(connection or cronwork.redis(), keys or cronwork.keys())
    if dry_run:
        return backfiller.plan(spec, ticks)
    result = backfiller.run(spec, ticks)
    log.info(
        "backfill schedule=%s from=%s to=%s ticks=%d enqueued=%d already=%d rate_limited=%d",
        spec.name,
        first.isoformat(),
        last.isoformat(),
        len(result.ticks),
        len(result.enqueued),
        len(result.taken),
        len(result.rate_limited),
    )
    return result


def parse_instant(field: str, value: Any, spec: ScheduleSpec) -> datetime:
    """An ISO-8601 date or time; without an offset it is a wall time of the schedule's zone."""
    if not isinstance(value, str) or not value.strip():
        raise BackfillError(f"'{field}' is required: an ISO-8601 time like 2026-11-01T00:00:00+08:00")
    try:
        instant = datetime.fromisoformat(value.strip())
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=spec.zone)
        return instant.astimezone(UTC)
    except ValueError:
        raise BackfillError(f"'{field}' is not an ISO-8601 time: {value[:64]!r}") from None
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise BackfillError(f"'{field}' is out of range: {value[:64]!r}") from None


def describe(start: Any, end: Any, result: BackfillResult) -> str:
    """One line for the audit trail and the CLI: the range and what was done."""
    counts = result.as_dict()
    done = "dry run" if result.dry_run else f"{counts['enqueued']} enqueued"
    line = f"{start} .. {end}: {counts['count']} ticks, {done}, {counts['already']} already had"
    if counts["rate_limited"]:
        line += f", {counts['rate_limited']} rate limited (next run allowed at {counts['retry_at']})"
    return line
