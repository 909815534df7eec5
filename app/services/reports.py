"""The daily operations report (seed 003): yesterday's runs of every schedule, to the admins.

Read from the ledger by tick range (ZRANGEBYSCORE on each schedule's index), not by "the
last N records": a schedule that ticks every 30 s has more ticks in a day than the ledger
keeps, and the report says so instead of silently undercounting.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis import Redis

from app.extensions import db
from app.models import NotificationKind
from app.services import dedup
from app.services.alerts import Alert, alert_admins
from app.services.timewindows import Window
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.runs import FINAL_FAILURES, RunState
from cronwork.stats import trimmed_through

logger = logging.getLogger(__name__)

STARTED = frozenset({RunState.RUNNING, RunState.RETRYING, RunState.SUCCEEDED, *FINAL_FAILURES})
SKIPPED = frozenset({RunState.SKIPPED_OVERLAP, RunState.PAUSED})
REPORT_TTL = 3 * dedup.DAY_SECONDS


@dataclass(frozen=True)
class ScheduleDay:
    """What happened to one schedule's ticks in the window."""

    name: str
    ticks: int
    runs: int
    failures: int
    misses: int
    skipped: int
    p95_duration: float | None
    capped: bool  # the history trim (keep_runs) dropped ticks of the window

    def line(self) -> str:
        p95 = "—" if self.p95_duration is None else f"{self.p95_duration:.3f} s"
        text = (
            f"{self.name}: {self.runs} runs, {self.failures} failures, {self.misses} misses, "
            f"{self.skipped} skipped, p95 {p95}"
        )
        return text + (" (older ticks of the day are no longer kept: see keep_runs)" if self.capped else "")


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile by nearest rank (a value that occurred), or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)), 1) - 1]


def schedule_day(redis: Redis, keys: Keys, name: str, window: Window) -> ScheduleDay:
    """Count the ledger records of `name` whose tick lies in `window`."""
    ledger = Ledger(redis, keys)
    index = keys.ledger(name)
    # Replies are bytes: the clients are made without decode_responses (app/extensions.py).
    ticks = cast(list[bytes], redis.zrangebyscore(index, window.start_epoch, f"({window.end_epoch}"))
    with redis.pipeline(transaction=False) as pipe:
        for tick in ticks:
            pipe.hmget(ledger.run_key(name, int(tick)), "state", "duration")
        records = pipe.execute()
    states: list[str] = []
    durations: list[float] = []
    for raw_state, duration in records:
        state = raw_state.decode() if raw_state else "unknown"
        states.append(state)
        if duration and state in STARTED:  # a skipped run's few milliseconds are not a run
            durations.append(float(duration))  # the ledger stores it as a decimal number
    trimmed = trimmed_through(redis, keys, name)
    capped = trimmed is not None and trimmed >= window.start_epoch
    return ScheduleDay(
        name=name,
        ticks=len(states),
        runs=sum(s in STARTED for s in states),
        failures=sum(s in FINAL_FAILURES for s in states),
        misses=sum(s == RunState.MISSED for s in states),
        skipped=sum(s in SKIPPED for s in states),
        p95_duration=p95(durations),
        capped=capped,
    )


def report_key(keys: Keys, label: str) -> str:
    """Dedup key of one day's report: a re-run (or a retry) does not send it twice."""
    return keys.daily_report_sent(label)


def daily_report(redis: Redis, keys: Keys, window: Window) -> dict[str, object]:
    """One notification per admin summarising every registered schedule over `window`.

    Sent once per window: the claim is released if the commit fails.
    """
    label = window.day.isoformat() if window.day else window.start.isoformat()
    names = sorted(n.decode() if isinstance(n, bytes) else n for n in redis.hkeys(keys.definitions))
    days = [schedule_day(redis, keys, name, window) for name in names]
    runs = sum(d.runs for d in days)
    failures = sum(d.failures for d in days)
    misses = sum(d.misses for d in days)
    title = f"Daily report {label}: {runs} runs, {failures} failures, {misses} misses"
    body = "\n".join(d.line() for d in days) or "No schedules are registered."
    with dedup.claimed(redis, [report_key(keys, label)], REPORT_TTL) as won:
        admins = alert_admins(Alert(NotificationKind.DAILY_REPORT, title, body)) if won else 0
        db.session.commit()
    logger.info(
        "daily report %s day=%s schedules=%d runs=%d failures=%d misses=%d admins=%d",
        "sent" if won else "already sent",
        label,
        len(days),
        runs,
        failures,
        misses,
        admins,
    )
    return {
        "day": label,
        "schedules": len(days),
        "runs": runs,
        "failures": failures,
        "misses": misses,
        "admins": admins,
        "already_sent": not won,
    }
