"""The same arithmetic for every system: ticks from push times, duplicates, misses, lateness, gap.

Attribution rule of the normal scenario: a push to the every-second queue at server time `t` belongs to tick
`floor(t)`, one to the every-minute queue to `floor(t / 60) * 60`. No system pushes before its
tick, so the rule is exact while a push is less than one period late; a push more than 1 s
late (rq-scheduler when its poll loop drifts across a second) lands on a later tick and shows
as that tick's duplicate and its own tick's miss.

The skew scenario (`count_by_intent`) cannot assume that no push is early, so it attributes a
push to the tick its system meant it for (`Push.intended`, read by intent.py), and to the
nearest tick, flagged, when the system did not say.
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


# -- the skew scenario: attribution by the tick the system meant ------------------------------


def nearest_tick(at: float, period: int) -> int:
    """The fallback for a push whose system did not say its tick: the closest one."""
    return round(at / period) * period


def intended_tick(push: Push, period: int) -> tuple[float, bool]:
    """`(tick, said)`: the system's own tick for the push (said), else the nearest (flagged)."""
    if push.intended is not None:
        return push.intended, True
    return nearest_tick(push.at, period), False


@dataclass(frozen=True)
class SkewCount:
    """How the expected ticks of one schedule were pushed, by the tick each push was meant for.

    Lateness is push minus intended tick by Redis's clock: negative for an early push.
    """

    expected: int
    pushed: int  # expected ticks pushed at least once
    pushes: int  # pushes meant for expected ticks, duplicates included
    early: int  # of those pushes, how many landed before their tick
    earliest: float | None  # the most negative lateness of an early push
    duplicates: int  # expected ticks pushed more than once
    missed: int  # expected ticks never pushed
    flagged: int  # pushes the system did not say a tick for (attributed to the nearest)
    stray: int  # pushes meant for a time in the window that is no tick of the period
    lateness: tuple[float, float] | None  # p50, p99 of each tick's first push


def by_intended_tick(
    pushes: Iterable[Push], period: int, first: float, last: float
) -> dict[float, list[Push]]:
    """Pushes meant for the ticks of [first, last], grouped by tick, each group in stream order."""
    wanted = set(expected_ticks(first, last, period))
    groups: dict[float, list[Push]] = defaultdict(list)
    for push in sorted(pushes, key=lambda p: (p.seq, p.at)):
        tick, _ = intended_tick(push, period)
        if tick in wanted:
            groups[tick].append(push)
    return dict(groups)


def count_by_intent(pushes: Iterable[Push], period: int, first: float, last: float) -> SkewCount:
    """Ticks in [first, last] pushed, early, duplicated, missed, by intended tick."""
    ticks = expected_ticks(first, last, period)
    pushes = list(pushes)
    groups = by_intended_tick(pushes, period, first, last)
    flagged = sum(p.intended is None for group in groups.values() for p in group)
    wanted = set(ticks)
    stray = sum(
        1 for p in pushes if (tick := intended_tick(p, period)[0]) not in wanted and first <= tick <= last
    )
    late = [push.at - tick for tick, group in groups.items() for push in group]
    early = [value for value in late if value < 0]
    counts = [len(groups.get(tick, ())) for tick in ticks]
    return SkewCount(
        expected=len(ticks),
        pushed=sum(1 for n in counts if n),
        pushes=sum(counts),
        early=len(early),
        earliest=min(early) if early else None,
        duplicates=sum(1 for n in counts if n > 1),
        missed=sum(1 for n in counts if not n),
        flagged=flagged,
        stray=stray,
        lateness=quantiles([group[0].at - tick for tick, group in groups.items()]),
    )
