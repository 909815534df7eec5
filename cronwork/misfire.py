"""What to do with a due template: which tick runs, which are recorded as missed.

Pure: no Redis, no clock of its own — the scheduler passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cronwork.spec import ScheduleSpec

# A tick at most this many seconds late is still run (caught up), not a misfire: it covers a
# slow pass, a short Redis blip or a standby scheduler taking over after the active one died.
ON_TIME_TOLERANCE = 10.0
# Missed ticks listed one by one at most; beyond this, one summary record counts the rest.
MAX_LISTED_MISSES = 500


@dataclass
class Decision:
    """The outcome of one due template at `now`."""

    runs: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)
    unlisted_misses: int = 0
    next_tick: datetime | None = None


def decide(spec: ScheduleSpec, due: datetime, now: datetime) -> Decision:
    """Apply `misfire`/`misfire_grace` to the ticks from `due` up to `now`.

    Ticks within ON_TIME_TOLERANCE all run. Older ones are misfires: with `run_latest` the
    latest of them runs if it is within `misfire_grace` and no on-time tick supersedes it;
    every other one is recorded as missed. Never a burst. Lateness is measured from each
    tick's due instant (the tick plus its jitter, `spec.due_at`).
    """
    ticks: list[datetime] = [due]
    unlisted = 0
    upcoming = spec.next_fire(due)
    while upcoming is not None and spec.due_at(upcoming) <= now:
        ticks.append(upcoming)
        if len(ticks) > MAX_LISTED_MISSES + 1:
            # A long outage: keep the most recent ticks, count the older ones.
            ticks.pop(0)
            unlisted += 1
        upcoming = spec.next_fire(upcoming)
    decision = Decision(next_tick=upcoming, unlisted_misses=unlisted)
    decision.runs = [t for t in ticks if (now - spec.due_at(t)).total_seconds() <= ON_TIME_TOLERANCE]
    late = [t for t in ticks if t not in decision.runs]
    if late and not decision.runs and spec.misfire == "run_latest":
        if (now - spec.due_at(late[-1])).total_seconds() <= spec.misfire_grace:
            decision.runs = [late.pop()]
    decision.missed = late
    return decision
