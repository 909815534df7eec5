"""The phases of a run: warm-up, chaos (kills and the Redis restart), drain and settle."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from app.embedded_redis import EmbeddedRedis
from bench.chaos.cluster import Cluster
from bench.chaos.hostile import Planted, plant
from bench.chaos.inflight import Kill
from bench.chaos.schedule import FINAL, KEYS, QUEUE
from bench.chaos.timeline import Timeline, window_ticks
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.ledger import Ledger
from cronwork.serializer import json_queue
from cronwork.spec import Schedule

DEFAULT_SECONDS = 300
KILL_EVERY = (3.0, 6.0)  # seconds between two kills, uniform
REDIS_DOWN = 2.0  # seconds Redis stays stopped during its restart
WARMUP_MAX = 90.0
DRAIN_MAX = 30.0  # for the schedulers to handle every tick up to the end of chaos
# Abandoned detection is heartbeat TTL (≤ 30 s) + maintenance (15 s); a retry then waits for
# rq's own scheduler, whose lock (61 s TTL) may have died with a killed worker: 120 s covers
# both, and the settle ends as soon as everything is final.
SETTLE_MAX = 120.0
PARENT_ONLY = 0.5  # share of worker kills that SIGKILL the main pid alone (its children must follow)
HOSTILE_AT = ((0.1, 0.3), (0.7, 0.9))  # when, as shares of the window, hostile entries are planted


@dataclass(frozen=True)
class Options:
    """What the command line asked for: chaos duration, seed, keep the folder, restart Redis."""

    seconds: float = DEFAULT_SECONDS
    seed: int = 0
    keep: bool = False
    redis_restart: bool = True


def _wait(cluster: Cluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cluster.poll()
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))


def run_chaos(
    cluster: Cluster,
    conn: Redis,
    server: EmbeddedRedis,
    options: Options,
    timeline: Timeline,
    marker: Path,
) -> tuple[list[Kill], Planted]:
    """Warm-up (everything up, a first run done), then the kills, one Redis restart and, twice,
    hostile entries (bench/chaos/hostile.py) in the queue, its failed registry and rq-scheduler's
    set; returns the kills and the ids planted."""
    rng, seconds = random.Random(options.seed), options.seconds
    cluster.start_all()
    deadline = time.monotonic() + WARMUP_MAX
    ledger = Ledger(conn, KEYS)
    while not (
        cluster.all_ready() and any(r["state"] == "succeeded" for r in ledger.history("quick_once", 5))
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up: not everything was up after {WARMUP_MAX:.0f}s (see the logs)")
        _wait(cluster, 0.5)
    timeline.chaos_start = time.time()
    timeline.chaos_end = timeline.chaos_start + seconds
    redis_at = timeline.chaos_start + seconds * rng.uniform(0.35, 0.65)
    plants = [timeline.chaos_start + seconds * rng.uniform(*share) for share in HOSTILE_AT]
    planted = Planted()
    kills: list[Kill] = []
    next_kill = timeline.chaos_start + rng.uniform(*KILL_EVERY)
    while (now := time.time()) < timeline.chaos_end:
        if plants and now >= plants[0]:
            try:
                more = plant(conn, marker, QUEUE, tag=f"-{len(timeline.hostile) + 1}")
            except RedisError:
                pass  # Redis is restarting: planted at the next turn
            else:
                plants.pop(0)
                timeline.hostile.append(time.time())
                for place in ("queue", "failed", "scheduled"):
                    getattr(planted, place).extend(getattr(more, place))
        if options.redis_restart and not timeline.redis_down and now >= redis_at:
            timeline.redis_down = time.time()
            server.stop()  # SIGTERM: redis-server flushes its AOF and exits cleanly
            _wait(cluster, REDIS_DOWN)
            server.start()
            timeline.redis_up = time.time()
        elif now >= next_kill:
            victim = rng.choice(sorted(cluster.current.values(), key=lambda m: m.label))
            parent_only = victim.role == "worker" and rng.random() < PARENT_ONLY
            kills.append(cluster.kill(victim, conn, parent_only))
            next_kill = time.time() + rng.uniform(*KILL_EVERY)
        _wait(cluster, 0.2)
    return kills, planted


def drain(cluster: Cluster, conn: Redis, schedule: Schedule, timeline: Timeline) -> None:
    """Keep the schedulers until every tick up to the end of chaos is handled, then stop them."""
    deadline = time.monotonic() + DRAIN_MAX
    specs = list(schedule.enabled.values())
    while time.monotonic() < deadline:
        scores = [conn.zscore(RQ_SCHEDULER_SET, KEYS.template_id(spec.name)) for spec in specs]
        # A score is the next tick's due instant (tick + jitter): the tick is what must be past.
        if all(
            score is not None and spec.tick_of(score).timestamp() > timeline.chaos_end
            for spec, score in zip(specs, scores, strict=True)
        ):
            break
        _wait(cluster, 0.5)
    cluster.stop("scheduler")


def settle(cluster: Cluster, conn: Redis, schedule: Schedule, timeline: Timeline) -> None:
    """Let the workers finish everything and find abandoned runs; bounded by SETTLE_MAX."""
    start = time.monotonic()
    while time.monotonic() - start < SETTLE_MAX:
        if not pending(conn, schedule, timeline):
            timeline.settled = True
            break
        _wait(cluster, 2.0)
    timeline.settle = time.monotonic() - start


def leftovers(conn: Redis) -> dict[str, list[str]]:
    """What is still queued, started, scheduled for retry or locked (rule 7)."""
    queue = json_queue(QUEUE, conn)
    return {
        "queued": queue.get_job_ids(),
        "intermediate": [i.decode() for i in conn.lrange(queue.intermediate_queue_key, 0, -1)],
        "started": StartedJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False),
        "scheduled": ScheduledJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False),
        "overlap_locks": [k.decode() for k in conn.scan_iter(match=KEYS.overlap_lock("*"))],
    }


def pending(conn: Redis, schedule: Schedule, timeline: Timeline) -> bool:
    """Whether anything in the window is not final yet, or anything is queued or started."""
    try:
        if any(leftovers(conn).values()):
            return True
        ledger = Ledger(conn, KEYS)
        for name, ticks in window_ticks(schedule, timeline).items():
            states = {r["tick"]: r.get("state") for r in ledger.history(name, 500)}
            if any(states.get(t) not in FINAL for t in ticks):
                return True
    except RedisError:
        return True
    return False
