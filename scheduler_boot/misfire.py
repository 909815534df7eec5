"""What to do with a due template: which tick runs, which are recorded as missed.

Pure: no Redis, no clock of its own — the scheduler passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from scheduler_boot.spec import ScheduleSpec

# A tick enqueued within this many seconds of its time is on time, not a misfire: it covers
# a slow pass or a short Redis blip without turning every late millisecond into a miss.
ON_TIME_TOLERANCE = 5.0
# Missed ticks listed one by one at most; beyond this, one summary record counts the rest.
MAX_LISTED_MISSES = 500


@dataclass
class Decision:
    """The outcome of one due template at `now`."""

    run: datetime | None = None
    missed: list[datetime] = field(default_factory=list)
    unlisted_misses: int = 0
    next_tick: datetime | None = None


def decide(spec: ScheduleSpec, due: datetime, now: datetime) -> Decision:
    """Apply `misfire`/`misfire_grace` to the ticks from `due` up to `now`."""
    ticks: list[datetime] = [due]
    unlisted = 0
    upcoming = spec.next_fire(due)
    while upcoming is not None and upcoming <= now:
        ticks.append(upcoming)
        if len(ticks) > MAX_LISTED_MISSES + 1:
            # A long outage: keep the most recent ticks, count the older ones.
            ticks.pop(0)
            unlisted += 1
        upcoming = spec.next_fire(upcoming)
    latest = ticks[-1]
    lateness = (now - latest).total_seconds()
    decision = Decision(next_tick=upcoming, unlisted_misses=unlisted)
    if lateness <= ON_TIME_TOLERANCE:
        decision.run = latest
    elif spec.misfire == "run_latest" and lateness <= spec.misfire_grace:
        decision.run = latest
    decision.missed = [t for t in ticks if t != decision.run]
    return decision
