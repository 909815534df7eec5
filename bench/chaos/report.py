"""The figures of a run (a table per schedule, kills, outages, lag), then every violation."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from datetime import UTC, datetime

from bench import faketime
from bench.chaos.cluster import SCHEDULERS, SKEW, SKEWED_SLOT, WORKERS, Cluster
from bench.chaos.evidence import Result
from bench.chaos.inflight import Kill
from bench.chaos.phases import Options
from bench.chaos.schedule import STATES
from bench.chaos.timeline import Timeline


def print_report(
    result: Result, cluster: Cluster, kills: list[Kill], timeline: Timeline, options: Options
) -> None:
    """The figures table, then every violation with its evidence."""
    columns = ("ticks", *STATES[:-1], "other", "retried", "ran")
    widths = [max(len(c), 5) + 2 for c in columns]
    print(
        f"\n== chaos: {options.seconds:.0f}s, seed {options.seed}, {SCHEDULERS} schedulers, {WORKERS} workers,"
        f" window {datetime.fromtimestamp(timeline.chaos_start, UTC):%H:%M:%S}"
        f"–{datetime.fromtimestamp(timeline.chaos_end, UTC):%H:%M:%S} UTC"
    )
    skew = f"scheduler {SKEWED_SLOT} ran with its clock {SKEW} (libfaketime)"
    print(skew if faketime.library() else "no skewed scheduler: libfaketime is not installed")
    print(f"{'schedule':<12}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    totals: Counter[str] = Counter()
    for name, states in result.states.items():
        row: dict[str, object] = {"ticks": sum(states.values()), **states, "retried": result.retried[name]}
        row["ran"] = result.ran.get(name, "-")
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
        print(
            f"{name:<12}" + "".join(f"{row.get(c, 0)!s:>{w}}" for c, w in zip(columns, widths, strict=True))
        )
    print(
        f"{'total':<12}" + "".join(f"{totals.get(c, 0):>{w}}" for c, w in zip(columns, widths, strict=True))
    )
    by_role = Counter(k.role for k in kills)
    children = sum(k.children for k in kills)
    print(
        f"kills: {by_role['scheduler']} scheduler, {by_role['worker']} worker (+{children} child processes:"
        f" work horses and rq scheduler children); runs killed mid-job {result.lost['kill']}"
        f" (abandoned then retried {result.lost['kill retried']}, abandoned final {result.lost['kill final']});"
        f" kills that raced a job's end {result.lost['kill raced the end of the job']}"
    )
    print(
        f"parent-only worker kills: {result.lost['parent-only kills']} (children gone within"
        f" {result.orphans_gone * 1000:.0f} ms at worst); hostile entries planted: {result.hostile}"
        f" ({len(timeline.hostile)} times: pickled args/meta, garbage, list meta in the queue, its failed"
        " registry and rq-scheduler's set)"
    )
    if cluster.crashes:
        print(
            f"crashes (processes that exited by themselves): {len(cluster.crashes)}; runs they held"
            f" {sum(len(c.targets) for c in cluster.crashes)} (abandoned {result.lost['crash']},"
            f" finished by their orphaned horse {result.lost['crash finished by its orphaned horse']})"
        )
    print(
        f"runs lost across the Redis restart: {result.lost['lost across the Redis restart']};"
        f" requeued after their worker died between dequeue and start: {result.lost['requeued, never started']}"
    )
    down = timeline.redis_up - timeline.redis_down if timeline.redis_down else 0.0
    print(f"redis restarts: {1 if timeline.redis_down else 0} (down {down:.1f}s, AOF)")
    gaps = [hi - lo for lo, hi in result.outages]
    print(f"outages (redis down or no scheduler up): {len(gaps)}, longest {max(gaps, default=0):.1f}s")
    if result.lags:
        lags = sorted(result.lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(
            f"enqueue lag: median {statistics.median(lags) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
            f" max {lags[-1] * 1000:.0f} ms"
        )
    print(
        f"unexpected exits: {len(cluster.unexpected)}; settle: {timeline.settle:.0f}s"
        f" ({'everything final' if timeline.settled else 'NOT SETTLED'})"
    )
    print(f"violations: {len(result.violations)}")
    for text in result.violations:
        print(f"  - {text}")
    sys.stdout.flush()
