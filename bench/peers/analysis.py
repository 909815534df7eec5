"""The same arithmetic for every system: ticks from push times, duplicates, misses, lateness, gap.

Attribution rule: a push to the every-second queue at server time `t` belongs to tick
`floor(t)`, one to the every-minute queue to `floor(t / 60) * 60`. No system pushes before its
tick, so the rule is exact while a push is less than one period late; a push more than 1 s
late (rq-scheduler when its poll loop drifts across a second) lands on a later tick and shows
as that tick's duplicate and its own tick's miss.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.harness import percentile
from bench.peers.monitor import Push, Start

SECOND = 1
MINUTE = 60


def tick_of(at: float, period: int) -> int:
    """The tick a push at `at` is attributed to."""
    return math.floor(at / period) * period


def by_tick(pushes: Iterable[Push], period: int) -> dict[int, list[Push]]:
    """Pushes grouped by tick, each group in time order."""
    groups: dict[int, list[Push]] = defaultdict(list)
    for push in sorted(pushes, key=lambda p: p.at):
        groups[tick_of(push.at, period)].append(push)
    return dict(groups)


def expected_ticks(first: float, last: float, period: int) -> list[int]:
    """Every tick of the period in [first, last]."""
    tick = math.ceil(first / period) * period
    return list(range(tick, math.floor(last) + 1, period))


@dataclass(frozen=True)
class TickCount:
    """How the expected ticks of one schedule were pushed."""

    expected: int
    pushed: int  # expected ticks pushed at least once
    duplicates: int  # expected ticks pushed more than once
    missed: int  # expected ticks never pushed
    pushes: int  # pushes attributed to expected ticks, duplicates included


def count_ticks(pushes: Iterable[Push], period: int, first: float, last: float) -> TickCount:
    """Ticks in [first, last] expected, pushed, duplicated and missed."""
    groups = by_tick(pushes, period)
    ticks = expected_ticks(first, last, period)
    counts = [len(groups.get(tick, ())) for tick in ticks]
    return TickCount(
        expected=len(ticks),
        pushed=sum(1 for n in counts if n),
        duplicates=sum(1 for n in counts if n > 1),
        missed=sum(1 for n in counts if not n),
        pushes=sum(counts),
    )


def first_pushes(pushes: Iterable[Push], period: int, first: float, before: float) -> dict[int, Push]:
    """The earliest push of each tick ≥ `first` made before `before` (the one that counts)."""
    return {
        tick: group[0]
        for tick, group in by_tick(pushes, period).items()
        if tick >= first and group[0].at < before
    }


def lateness(firsts: dict[int, Push]) -> list[float]:
    """Push minus tick, in seconds, of each tick's first push."""
    return [push.at - tick for tick, push in firsts.items()]


def pair_starts(pushes: Sequence[Push], starts: Iterable[Start]) -> dict[Push, float]:
    """Each push's job start (rq's `started_at`): the first start of that job id recorded after
    the push and before the same id's next push (rq-scheduler re-pushes one job id every time).

    A `started_at` older than the push is the previous run's, rewritten when rq-scheduler saves
    the job again to re-push it: never a start of this push.
    """
    starts_by_id: dict[str, list[Start]] = defaultdict(list)
    for start in sorted(starts, key=lambda s: s.seq):
        starts_by_id[start.job_id].append(start)
    pushes_by_id: dict[str, list[Push]] = defaultdict(list)
    for push in sorted(pushes, key=lambda p: p.seq):
        pushes_by_id[push.job_id].append(push)
    paired: dict[Push, float] = {}
    for job_id, id_pushes in pushes_by_id.items():
        candidates = starts_by_id.get(job_id, [])
        for index, push in enumerate(id_pushes):
            until = id_pushes[index + 1].seq if index + 1 < len(id_pushes) else math.inf
            found = next(
                (s for s in candidates if push.seq < s.seq < until and s.started_at >= push.at), None
            )
            if found is not None:
                paired[push] = found.started_at
    return paired


def start_latency(firsts: dict[int, Push], started: dict[Push, float]) -> list[float]:
    """Job start minus tick of each tick's first push whose job started."""
    return [started[push] - tick for tick, push in firsts.items() if push in started]


@dataclass(frozen=True)
class Gap:
    """The longest interval between consecutive pushes around a kill."""

    seconds: float
    open_ended: bool  # no push at all after the kill within the horizon: a lower bound


def gap_around(times: Iterable[float], killed_at: float, horizon: float) -> Gap | None:
    """From the last push before `killed_at` through `horizon` seconds after it; None without one."""
    ordered = sorted(times)
    before = [t for t in ordered if t < killed_at]
    if not before:
        return None
    end = killed_at + horizon
    after = [t for t in ordered if killed_at <= t <= end]
    if not after:
        return Gap(end - before[-1], open_ended=True)
    points = [before[-1], *after]
    return Gap(max(b - a for a, b in zip(points, points[1:], strict=False)), open_ended=False)


def quantiles(values: Sequence[float]) -> tuple[float, float] | None:
    """(p50, p99), or None without values."""
    if not values:
        return None
    return percentile(values, 50), percentile(values, 99)
