"""One system's run: flush, MONITOR, start, wait for its first push, SIGKILL midway, stop, analyse.

The skew scenario (`run_skew`): the same, with one replica's clock shifted by libfaketime and
no kill; pushes are attributed to the tick each was meant for (intent.py).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from app.embedded_redis import EmbeddedRedis
from bench import faketime
from bench.harness import stop
from bench.peers.analysis import (
    MINUTE,
    SECOND,
    Gap,
    SkewCount,
    TickCount,
    by_intended_tick,
    count_by_intent,
    count_ticks,
    first_pushes,
    gap_around,
    lateness,
    pair_starts,
    quantiles,
    start_latency,
)
from bench.peers.intent import Intent
from bench.peers.monitor import EventCollector, MonitorTap, Push
from bench.peers.sockets import owner_of
from bench.peers.systems import Proc, Stage, System

READY_TIMEOUT = 60.0  # start-up until the first every-second push and a live worker
SETTLE = 3  # whole seconds after that before ticks count: both replicas are up by then
GRACE = 1.5  # after the window: the last tick's push and its job's start
GAP_HORIZON = 10.0  # the gap is looked for this long after the kill
SKEWED = "replica-a"  # the replica whose clock the skew scenario shifts
WORKERS_KEY = "rq:workers:{queue}"  # rq's registry of the workers listening on a queue


class SystemFailed(RuntimeError):
    """A system did not get going, or a process of it died on its own."""


@dataclass(frozen=True)
class Outcome:
    """What one system did in its window, measured the same way as every other's."""

    system: System
    second: TickCount
    minute: TickCount
    push: tuple[float, float] | None  # tick → push p50, p99 before the kill
    start: tuple[float, float] | None  # tick → job start p50, p99 before the kill
    minute_lateness: list[float]
    gap: Gap | None
    killed: str  # which replica was SIGKILLed, and how it was chosen


def _sleep_until(moment: float, stage: Stage, tap: MonitorTap, spared: Proc | None = None) -> None:
    """Sleep until `moment`, failing early when a process (but `spared`) exited or MONITOR broke."""
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.2))
        if tap.error is not None:
            raise SystemFailed(f"MONITOR connection failed: {tap.error}")
        for proc in stage.started:
            if proc is not spared and proc.poll() is not None:
                raise SystemFailed(f"exited with {proc.returncode}: {stage.describe(proc)}")


def _second_pushes(collector: EventCollector, queue: str) -> list[Push]:
    return [p for p in list(collector.pushes) if p.queue == queue]


def _wait_ready(stage: Stage, tap: MonitorTap, conn: Redis) -> float:
    """When the first every-second push landed and a worker listens, whichever is later."""
    deadline = time.time() + READY_TIMEOUT
    while True:
        pushes = _second_pushes(tap.collector, stage.second_queue)
        if pushes and conn.scard(WORKERS_KEY.format(queue=stage.second_queue)):
            return max(pushes[0].at, time.time())
        if time.time() > deadline:
            logs = "; ".join(stage.describe(proc, lines=2) for proc in stage.started)
            raise SystemFailed(
                f"no every-second push and live worker within {READY_TIMEOUT:.0f} s "
                f"(pushes: {len(pushes)}); {logs}"
            )
        _sleep_until(time.time() + 0.1, stage, tap)


def _kill_last_pusher(
    stage: Stage, replicas: list[Proc], tap: MonitorTap, redis_port: int
) -> tuple[Proc, str]:
    """SIGKILL the replica that made the latest every-second push; which one, and how it was found."""
    pushes = _second_pushes(tap.collector, stage.second_queue)
    client = pushes[-1].client if pushes else "-"
    owner = owner_of(client, redis_port, [r.pid for r in replicas])
    victim = next((r for r in replicas if r.pid == owner), replicas[0])
    name = stage.names[victim.pid]
    note = name if owner else f"{name} (pusher {client} not found)"
    os.kill(victim.pid, signal.SIGKILL)
    return victim, note


@contextmanager
def _running(
    system: System, server: EmbeddedRedis, stage: Stage, intent: Intent | None = None
) -> Iterator[tuple[MonitorTap, list[Proc], float]]:
    """`system`'s replicas on a flushed `server`, watched through MONITOR: yields the tap, the
    replicas and the first counted tick; stops everything and flushes Redis afterwards."""
    conn = Redis.from_url(server.url)
    conn.flushall()
    version = int(str(conn.info("server")["redis_version"]).split(".")[0])
    collector = EventCollector(
        {stage.second_queue, stage.minute_queue}, caller_follows=version >= 7, intent=intent
    )
    try:
        with MonitorTap("127.0.0.1", server.port, collector) as tap:
            try:
                replicas = system.launch(stage)
                yield tap, replicas, math.floor(_wait_ready(stage, tap, conn)) + SETTLE
            finally:
                stop(*stage.started)
    finally:
        conn.flushall()
        conn.close()


def run_system(system: System, server: EmbeddedRedis, seconds: int, folder: Path) -> Outcome:
    """Run `system` for `seconds` of counted ticks on `server` (flushed first and last)."""
    stage = Stage(system.key, server.url, folder)
    with _running(system, server, stage) as (tap, replicas, t0):
        end = t0 + seconds
        _sleep_until(t0 + seconds // 2 + 0.5, stage, tap)  # mid-second: the tick's push is in
        victim, killed = _kill_last_pusher(stage, replicas, tap, server.port)
        killed_at = time.time()
        _sleep_until(end + GRACE, stage, tap, spared=victim)
    collector = tap.collector

    second = _second_pushes(collector, stage.second_queue)
    minute = [p for p in collector.pushes if p.queue == stage.minute_queue]
    firsts = first_pushes(second, SECOND, t0, killed_at)
    minute_firsts = first_pushes(minute, MINUTE, t0, end + GRACE)
    return Outcome(
        system=system,
        second=count_ticks(second, SECOND, t0, end - 1),
        minute=count_ticks(minute, MINUTE, t0, end - 1),
        push=quantiles(lateness(firsts)),
        start=quantiles(start_latency(firsts, pair_starts(second, collector.starts))),
        minute_lateness=lateness({tick: p for tick, p in minute_firsts.items() if tick < end}),
        gap=gap_around([p.at for p in second], killed_at, min(GAP_HORIZON, end + GRACE - killed_at)),
        killed=killed,
    )


@dataclass(frozen=True)
class SkewOutcome:
    """What one system did with one replica's clock shifted, by the tick each push was meant for."""

    system: System
    offset: str
    second: SkewCount
    minute: SkewCount
    by_replica: dict[str, int]  # every-second pushes counted in `second`, by the replica that made them
    attribution: str  # where the intended tick comes from (intent.py)


def _owners(clients: Iterable[str], stage: Stage, replicas: list[Proc], redis_port: int) -> dict[str, str]:
    """Client address → replica name, while the replicas still hold their connections."""
    found: dict[str, str] = {}
    for client in set(clients):
        pid = owner_of(client, redis_port, [r.pid for r in replicas])
        if pid is not None:
            found[client] = stage.names[pid]
    return found


def _check_skewed(stage: Stage, replicas: list[Proc]) -> None:
    """Fail unless the skewed replica's process really has libfaketime loaded."""
    proc = next(r for r in replicas if stage.names[r.pid] == SKEWED)
    try:
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    except OSError as exc:
        raise SystemFailed(f"cannot read the memory map of {SKEWED}: {exc}") from None
    if "libfaketime" not in maps:
        raise SystemFailed(f"{SKEWED} (pid {proc.pid}) runs without libfaketime: its clock is not shifted")


def run_skew(system: System, server: EmbeddedRedis, seconds: int, folder: Path, offset: str) -> SkewOutcome:
    """Run `system` for `seconds` of counted ticks with `SKEWED`'s clock shifted by `offset`."""
    stage = Stage(
        system.key, server.url, folder, extra_env={SKEWED: {**faketime.skewed_env(offset), **system.skew_env}}
    )
    intent = system.intent()
    with _running(system, server, stage, intent) as (tap, replicas, t0):
        _check_skewed(stage, replicas)
        end = t0 + seconds
        _sleep_until(end + GRACE, stage, tap)
        owners = _owners((p.client for p in tap.collector.pushes), stage, replicas, server.port)
    collector = tap.collector

    second = _second_pushes(collector, stage.second_queue)
    minute = [p for p in collector.pushes if p.queue == stage.minute_queue]
    counted = by_intended_tick(second, SECOND, t0, end - 1).values()
    by_replica = Counter(owners.get(p.client, "?") for group in counted for p in group)
    return SkewOutcome(
        system=system,
        offset=offset,
        second=count_by_intent(second, SECOND, t0, end - 1),
        minute=count_by_intent(minute, MINUTE, t0, end - 1),
        by_replica=dict(sorted(by_replica.items())),
        attribution=intent.name,
    )
