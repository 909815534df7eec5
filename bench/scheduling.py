"""Scheduling benchmarks (issue 3): tick latency, 1,000 simultaneous ticks, reconcile cost.

Each compares Cronwork with stock rq-scheduler measured in the same run on the same machine.
"""

from __future__ import annotations

import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq.job import Job
from rq_scheduler import Scheduler

from bench.harness import fmt_ms, percentile, process_env, python, redis_server, start, stop
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.ledger import Ledger
from cronwork.loader import parse_schedule
from cronwork.serializer import JSONJob, json_queue
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan

WRITE_COMMANDS = {
    "set",
    "hset",
    "zadd",
    "del",
    "hdel",
    "zrem",
    "expire",
    "lpush",
    "rpush",
    "sadd",
    "hmset",
    "setex",
    "zremrangebyrank",
    "pexpire",
    "unlink",
}


def _schedule_text(count: int, trigger: str = 'every = "1h"') -> str:
    parts = ['[defaults]\ntimezone = "Asia/Shanghai"\ntimeout = "30s"\n']
    parts += [f'[schedules.s{i:04d}]\nfunc = "jobs.system.health_check"\n{trigger}\n' for i in range(count)]
    return "\n".join(parts)


def _specs(count: int, now: datetime) -> dict:
    return dict(parse_schedule(tomllib.loads(_schedule_text(count)), Path("bench.toml")).specs)


def latency(ticks: int = 60) -> None:
    """tick → enqueue and tick → start, Cronwork vs stock `rqscheduler -i 1`."""
    print(f"\n== tick latency over {ticks} ticks (idle forking worker)")
    with redis_server() as ours, redis_server() as stock, tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        schedule = (
            '[schedules.health_check]\nfunc = "jobs.system.health_check"\nevery = "1s"\noverlap = "allow"\n'
        )
        env = process_env(ours.url, base, schedule)
        start(python("-m", "flask", "--app", "app", "db", "upgrade"), env, base / "db.log").wait()
        stock_env = process_env(stock.url, base)
        stock_conn = Redis.from_url(stock.url)
        first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
        sched = Scheduler(connection=stock_conn)
        stock_times = [first + timedelta(seconds=i) for i in range(ticks)]
        stock_jobs = [sched.enqueue_at(t.replace(tzinfo=None), "bench.probe.noop") for t in stock_times]
        procs = [
            start(python("-m", "scheduler_boot"), env, base / "scheduler.log"),
            start(python("-m", "jobs.worker"), env, base / "worker.log"),
            start(
                [str(Path(python()[0]).parent / "rqscheduler"), "-u", stock.url, "-i", "1"],
                stock_env,
                base / "rqscheduler.log",
            ),
            start(
                [str(Path(python()[0]).parent / "rq"), "worker", "-u", stock.url],
                stock_env,
                base / "rqworker.log",
            ),
        ]
        time.sleep((first - datetime.now(UTC)).total_seconds() + ticks + 3)
        stop(*procs)

        conn = Redis.from_url(ours.url)
        records = [r for r in Ledger(conn, Keys()).history("health_check", 500) if r.get("job_id")]
        records = sorted(records, key=lambda r: r["tick"])[-ticks:]
        our_enqueue = [r["lag"] for r in records]
        our_start = []
        for r in records:
            job = JSONJob.fetch(r["job_id"], connection=conn)
            if job.started_at:
                our_start.append(job.started_at.replace(tzinfo=UTC).timestamp() - r["tick"])
        stock_enqueue, stock_start = [], []
        for job_ref, tick in zip(stock_jobs, stock_times, strict=True):
            job = Job.fetch(job_ref.id, connection=stock_conn)  # the peer's own (pickle) format
            if job.enqueued_at:
                stock_enqueue.append(job.enqueued_at.replace(tzinfo=UTC).timestamp() - tick.timestamp())
            if job.started_at:
                stock_start.append(job.started_at.replace(tzinfo=UTC).timestamp() - tick.timestamp())

    def row(label: str, values: list[float]) -> tuple[float, float]:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(f"{label:<42} n={len(values):3d}  p50 {fmt_ms(p50)}  p99 {fmt_ms(p99)}")
        return p50, p99

    _, ours_enq_p99 = row("cronwork tick → enqueue", our_enqueue)
    _, ours_start_p99 = row("cronwork tick → job start", our_start)
    _, stock_enq_p99 = row("stock rqscheduler -i 1 tick → enqueue", stock_enqueue)
    _, stock_start_p99 = row("stock rqscheduler -i 1 tick → job start", stock_start)
    print(f"{'stock rqscheduler default -i 60 (analytic)':<42}        p50 {fmt_ms(30.0)}  p99 {fmt_ms(59.4)}")
    print(
        f"ratio p99 enqueue stock/cronwork: {stock_enq_p99 / ours_enq_p99:.1f}x; "
        f"p99 start: {stock_start_p99 / ours_start_p99:.1f}x  (targets: ≤ 50 ms enqueue, ≤ 300 ms start)"
    )


def burst(count: int = 1000) -> None:
    """`count` schedules due in the same second: one warm pass, exactly once.

    Warm: the schedules fired once before (a running loop has parsed their definitions and
    made each one's job hash). "plan" is what the loop does ahead of the instant, "push" what
    happens after it (one script call per 200 templates); a pass called at the instant costs both.
    """
    print(f"\n== {count} schedules due in the same second")
    now = datetime.now(UTC)
    with redis_server() as server:
        conn = Redis.from_url(server.url)
        keys = Keys()
        apply_plan(conn, _specs(count, now), keys, now)
        scheduler = CronworkScheduler(conn, keys)
        templates = [keys.template_id(f"s{i:04d}") for i in range(count)]
        first = float(int(time.time()) - 5)
        conn.zadd(RQ_SCHEDULER_SET, dict.fromkeys(templates, first))
        scheduler.enqueue_jobs()  # the earlier tick: warms the loop's caches
        conn.delete(json_queue("default", conn).key)
        conn.zadd(RQ_SCHEDULER_SET, dict.fromkeys(templates, first + 1))
        started = time.perf_counter()
        plan = scheduler.plan(time.time())
        planned = time.perf_counter()
        enqueued = scheduler.fire(plan)
        ours = time.perf_counter() - started
        push = time.perf_counter() - planned
        again = scheduler.enqueue_jobs()
        queued = json_queue("default", conn).count
        print(
            f"cronwork one pass: {fmt_ms(ours)} (plan {fmt_ms(ours - push)}, push {fmt_ms(push)})  "
            f"enqueued {len(enqueued)}, queue {queued}, second pass {len(again)}"
        )
        assert len(enqueued) == queued == count and again == []

        conn.flushall()
        stock = Scheduler(connection=conn)
        for i in range(count):
            stock.cron("0 * * * *", "bench.probe.noop", id=f"stock-{i}")
        # rq-scheduler compares with "now" truncated to whole seconds.
        conn.zadd(RQ_SCHEDULER_SET, {f"stock-{i}": time.time() - 2 for i in range(count)})
        started = time.perf_counter()
        stock.enqueue_jobs()
        theirs = time.perf_counter() - started
        print(
            f"stock rq-scheduler enqueue_jobs: {fmt_ms(theirs)}  queue {json_queue('default', conn).count}"
        )
    print(f"ratio stock/cronwork: {theirs / ours:.1f}x  (targets: 1,000 ≤ 100 ms, 10,000 ≤ 1 s)")


def reconcile(count: int = 500) -> None:
    """First sync of `count` schedules, then a no-op re-sync: time and Redis writes."""
    print(f"\n== reconcile {count} schedules")
    now = datetime.now(UTC)
    specs = _specs(count, now)
    with redis_server() as server:
        conn = Redis.from_url(server.url)
        started = time.perf_counter()
        apply_plan(conn, specs, Keys(), now)
        first = time.perf_counter() - started
        conn.config_resetstat()
        started = time.perf_counter()
        plan = apply_plan(conn, specs, Keys(), now)
        noop = time.perf_counter() - started
        stats = conn.info("commandstats")
        writes = sum(v["calls"] for k, v in stats.items() if k.removeprefix("cmdstat_") in WRITE_COMMANDS)
        lock_writes = 2  # the sync lock's SET and its release
    assert not plan.has_changes
    print(
        f"first sync: {fmt_ms(first)}   no-op re-sync: {fmt_ms(noop)}   "
        f"writes besides the sync lock: {writes - lock_writes}  (target ≤ 200 ms, 0 writes)"
    )
