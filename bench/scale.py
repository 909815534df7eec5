"""`python -m bench scale`: parse, sync, burst, idle CPU and Redis bytes at 10 to 10,000 schedules.

For each size, one generated schedule file (cron with seconds, daily and weekly cron, minute
steps, `every`, five zones, kwargs) is:
- checked by a real `python -m scheduler_boot --check`, and parsed in process (per schedule);
- synced into an empty bundled Redis, then re-synced (a no-op); start-up = parse + first sync;
- measured in Redis: `MEMORY USAGE` summed over every key, per schedule;
- fired in one pass with every schedule due in the same second (`enqueue_jobs()`, warm: a pass
  at an earlier tick came first, as in `bench burst`), then the same tick again: exactly once
  means the pass pushed one run per schedule and the replay none;
- left to a real `python -m scheduler_boot` for 20 s in which nothing is due: its CPU seconds
  per minute (utime + stime from /proc);
- then, under that running scheduler, every schedule due at one tick: when the first and the
  last run were pushed (the ledger's push times, Redis's clock) and that each was pushed once.
  This is the target's figure: the loop plans a pass ahead of its instant, so what follows
  the tick is the push itself. The one-pass "burst ms" column is plan + push, called at once.

No schedule fires at a second past :29 of a minute (the file is made so), which leaves each
minute's :30-:59 quiet: the burst's tick and the idle window are placed there, so no real tick
joins them. Sizes: 10, 100, 1,000, 10,000 (BENCH_SCALE_MAX caps them); about 3 minutes.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis

from app.embedded_redis import EmbeddedRedis
from bench.harness import process_env, python, redis_server, start, stop
from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.loader import load_schedule
from cronwork.serializer import json_queue
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan

SIZES = (10, 100, 1_000, 10_000)
ZONES = ("Asia/Shanghai", "UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe")
FUNCS = (
    "jobs.system.health_check",
    "jobs.tasks.update_time_progress",
    "jobs.environment.daily_env_stats",
    "jobs.reports.daily_report",
    "jobs.stages.update_stage_status",
)
QUIET_FROM = 30  # second of the minute from which no generated schedule fires
IDLE_SECONDS = 20.0
LIVE_LEAD = 4.0  # seconds between the idle window's end and the live burst's tick
READY_TIMEOUT = 120.0

# Targets of issue 11 (parse per schedule judged from 1,000 schedules up).
PARSE_MS = 1.0
CHECK_10K_S = 10.0
STARTUP_10K_S = 15.0
BURST_S = {1_000: 0.1, 10_000: 1.0}
IDLE_10K_S_PER_MIN = 1.0


def schedule_text(count: int) -> str:
    """A schedule file of `count` schedules, varied like a real large one, firing only at
    seconds 0-29 of a minute."""
    parts = ['[defaults]\ntimezone = "Asia/Shanghai"\ntimeout = "30s"\n']
    for i in range(count):
        kind = i % 6
        if kind == 0:  # hourly, at a second of its own
            trigger = f'cron = "{i % QUIET_FROM} {(i // QUIET_FROM) % 60} * * * *"'
        elif kind == 1:  # daily
            trigger = f'cron = "{i % 60} {(i // 60) % 24} * * *"'
        elif kind == 2:  # weekly
            trigger = f'cron = "{i % 60} {(i // 60) % 24} * * {i % 7}"'
        elif kind == 3:
            trigger = f'cron = "*/{i % 5 + 1} * * * *"'
        elif kind == 4:
            trigger = f'every = "{i % 50 + 10}m"'
        else:
            trigger = f'every = "{i % 12 + 1}h"'
        lines = [f"[schedules.s{i:05d}]", f'func = "{FUNCS[i % len(FUNCS)]}"', trigger]
        lines.append(f'timezone = "{ZONES[i % len(ZONES)]}"')
        if i % 3 == 0:
            lines.append(f'kwargs = {{ batch = {i}, source = "bench" }}')
        if i % 4 == 0:
            lines.append(f'description = "generated schedule {i}"')
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


@dataclass
class Row:
    """The figures of one size."""

    size: int
    check_s: float = math.nan
    parse_ms: float = math.nan  # per schedule
    sync_s: float = math.nan
    noop_s: float = math.nan
    bytes_per_schedule: float = math.nan
    first_pass_s: float = math.nan  # the warm-up pass, specs parsed before it
    burst_s: float = math.nan
    burst_enqueued: int = -1
    burst_queue: int = -1
    replay_enqueued: int = -1
    idle_s_per_min: float = math.nan
    live_pushed: int = -1  # runs of the live burst's tick in the ledger
    live_queue: int = -1
    live_first_s: float = math.nan  # first push minus tick (Redis's clock)
    live_last_s: float = math.nan  # last push minus tick

    @property
    def startup_s(self) -> float:
        return self.parse_ms * self.size / 1000 + self.sync_s

    @property
    def exactly_once(self) -> bool:
        return self.burst_enqueued == self.burst_queue == self.size and self.replay_enqueued == 0


def run() -> None:
    cap = int(os.environ.get("BENCH_SCALE_MAX", "10000"))
    sizes = [size for size in SIZES if size <= cap]
    print(f"\n== scale: {', '.join(f'{s:,}' for s in sizes)} schedules")
    rows = [Row(size) for size in sizes]
    keys = Keys()
    with tempfile.TemporaryDirectory() as folder, ExitStack() as servers:
        base = Path(folder)
        redis_for: dict[int, EmbeddedRedis] = {}
        schedulers: dict[int, CronworkScheduler] = {}
        for row in rows:
            path = base / f"schedule-{row.size}.toml"
            path.write_text(schedule_text(row.size))
            server = redis_for[row.size] = servers.enter_context(redis_server())
            conn = Redis.from_url(server.url)
            parse_and_sync(row, path, conn, keys, process_env(server.url, base))
            schedulers[row.size] = warm_up(row, conn, keys)
        tick = quiet_second_after(max(Redis.from_url(s.url).time()[0] for s in redis_for.values()))
        wait_until(tick + 1)
        for row in rows:
            burst(row, schedulers[row.size], keys, tick)
        idle_cpu(rows, redis_for, base)
    print_table(rows)


def parse_and_sync(row: Row, path: Path, conn: Redis, keys: Keys, env: dict[str, str]) -> None:
    """--check in a real process, then parse, first sync, no-op sync and bytes in this one."""
    started = time.perf_counter()
    check = subprocess.run(
        python("-m", "scheduler_boot", "--check", "--file", str(path)),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    row.check_s = time.perf_counter() - started
    if check.returncode != 0:
        raise RuntimeError(f"--check failed: {check.stderr[-500:]}")
    started = time.perf_counter()
    specs = load_schedule(path).specs
    row.parse_ms = (time.perf_counter() - started) * 1000 / row.size
    now = datetime.now(UTC)
    started = time.perf_counter()
    plan = apply_plan(conn, specs, keys, now)
    row.sync_s = time.perf_counter() - started
    assert len(plan.added) == row.size, plan.render()[-300:]
    started = time.perf_counter()
    plan = apply_plan(conn, specs, keys, now)
    row.noop_s = time.perf_counter() - started
    assert not plan.has_changes
    row.bytes_per_schedule = redis_bytes(conn) / row.size


def redis_bytes(conn: Redis) -> int:
    """`MEMORY USAGE` summed over every key (all nested values counted)."""
    names = list(conn.scan_iter(count=1000))
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.memory_usage(name, samples=0)
        return sum(size or 0 for size in pipe.execute())


def templates(conn: Redis, keys: Keys) -> list[str]:
    return [
        m.decode() for m in conn.zrange(RQ_SCHEDULER_SET, 0, -1) if keys.name_from_template_id(m.decode())
    ]


def warm_up(row: Row, conn: Redis, keys: Keys) -> CronworkScheduler:
    """A first pass at an earlier tick, as a running loop has had: specs parsed, job hashes made."""
    scheduler = CronworkScheduler(conn, keys)
    scheduler._load_specs()
    earlier = float(conn.time()[0] - 1)
    conn.zadd(RQ_SCHEDULER_SET, dict.fromkeys(templates(conn, keys), earlier))
    started = time.perf_counter()
    scheduler.enqueue_jobs()
    row.first_pass_s = time.perf_counter() - started
    return scheduler


def burst(row: Row, scheduler: CronworkScheduler, keys: Keys, tick: float) -> None:
    """Every schedule due at `tick` (a quiet second): one pass, then the same tick replayed."""
    conn = scheduler.connection
    queue = json_queue("default", conn)
    conn.delete(queue.key)
    members = templates(conn, keys)
    conn.zadd(RQ_SCHEDULER_SET, dict.fromkeys(members, tick))
    started = time.perf_counter()
    enqueued = scheduler.enqueue_jobs()
    row.burst_s = time.perf_counter() - started
    row.burst_enqueued = len(enqueued)
    row.burst_queue = queue.count
    conn.zadd(RQ_SCHEDULER_SET, dict.fromkeys(members, tick))  # as a stale replica would see it
    row.replay_enqueued = len(scheduler.enqueue_jobs())


def idle_cpu(rows: list[Row], redis_for: dict[int, EmbeddedRedis], base: Path) -> None:
    """Real schedulers (one per size, each on its Redis), measured over a quiet window."""
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for row in rows:
            env = process_env(redis_for[row.size].url, base)
            env["SCHEDULE_FILE"] = str(base / f"schedule-{row.size}.toml")
            procs[row.size] = start(python("-m", "scheduler_boot"), env, base / f"scheduler-{row.size}.log")
        keys = Keys()
        deadline = time.monotonic() + READY_TIMEOUT
        for row in rows:
            conn = Redis.from_url(redis_for[row.size].url)
            while store.scheduler_heartbeat_age(conn, keys) is None:
                if procs[row.size].poll() is not None or time.monotonic() > deadline:
                    log = (base / f"scheduler-{row.size}.log").read_text()[-800:]
                    raise RuntimeError(f"scheduler for {row.size} schedules did not start: {log}")
                time.sleep(0.2)
        quiet = quiet_second_after(time.time() + 1)
        wait_until(quiet + 1)
        before = {size: cpu_seconds(proc.pid) for size, proc in procs.items()}
        wait_until(quiet + 1 + IDLE_SECONDS)
        for row in rows:
            used = cpu_seconds(procs[row.size].pid) - before[row.size]
            row.idle_s_per_min = used * 60 / IDLE_SECONDS
        live_burst(rows, redis_for, quiet + 1 + IDLE_SECONDS + LIVE_LEAD)
    finally:
        stop(*procs.values())


def live_burst(rows: list[Row], redis_for: dict[int, EmbeddedRedis], tick: float) -> None:
    """Every schedule due at `tick` (still in the quiet half minute) under the running
    scheduler: from the ledger, when the first and the last run were pushed (Redis's clock)
    and that each was pushed once."""
    keys = Keys()
    for row in rows:
        conn = Redis.from_url(redis_for[row.size].url)
        conn.delete(json_queue("default", conn).key)
        conn.zadd(RQ_SCHEDULER_SET, dict.fromkeys(templates(conn, keys), tick), xx=True)
    wait_until(tick + 3 + max(row.size for row in rows) / 2000)
    for row in rows:
        conn = Redis.from_url(redis_for[row.size].url)
        names = [m.removeprefix(f"{keys.prefix}-") for m in templates(conn, keys)]
        with conn.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(keys.run_record(name, int(tick)), "enqueued_at")
            pushed = [datetime.fromisoformat(v.decode()).timestamp() for (v,) in pipe.execute() if v]
        row.live_pushed = len(pushed)
        # Only this tick's runs: ticks of the schedules' own after the minute turns join the queue.
        suffix = f"-{int(tick)}"
        row.live_queue = sum(job_id.endswith(suffix) for job_id in json_queue("default", conn).job_ids)
        if pushed:
            row.live_first_s, row.live_last_s = min(pushed) - tick, max(pushed) - tick


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet_second_after(instant: float) -> float:
    """The first :30 of a minute at or after `instant`: no generated schedule fires in the
    following 30 seconds."""
    minute = math.floor(instant / 60) * 60
    tick = minute + QUIET_FROM
    return float(tick if tick >= instant else tick + 60)


def wait_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def print_table(rows: list[Row]) -> None:
    print(
        f"{'schedules':>9} | {'parse ms/sch':>12} | {'--check s':>9} | {'1st sync s':>10} | "
        f"{'start-up s':>10} | {'no-op s':>7} | {'1st pass s':>10} | {'burst ms':>8} | "
        f"{'once':>4} | {'idle s/min':>10} | {'bytes/sch':>9}"
    )
    for row in rows:
        print(
            f"{row.size:>9,} | {row.parse_ms:>12.3f} | {row.check_s:>9.2f} | {row.sync_s:>10.2f} | "
            f"{row.startup_s:>10.2f} | {row.noop_s:>7.2f} | {row.first_pass_s:>10.2f} | "
            f"{row.burst_s * 1000:>8.1f} | {'yes' if row.exactly_once else 'NO':>4} | "
            f"{row.idle_s_per_min:>10.3f} | {row.bytes_per_schedule:>9,.0f}"
        )
        if not row.exactly_once:
            print(
                f"    burst of {row.size}: enqueued {row.burst_enqueued}, queue {row.burst_queue}, "
                f"replay enqueued {row.replay_enqueued}"
            )
    print("\nlive: a running `python -m scheduler_boot`, every schedule due at one tick (pushes by Redis's clock)")
    for row in rows:
        once = row.live_pushed == row.live_queue == row.size
        print(
            f"{row.size:>9,} | first push {row.live_first_s * 1000:>8.1f} ms | last push "
            f"{row.live_last_s * 1000:>8.1f} ms after the tick | pushed {row.live_pushed:,}, queue "
            f"{row.live_queue:,} | {'exactly once' if once else 'NOT EXACTLY ONCE'}"
        )
    by_size = {row.size: row for row in rows}
    largest = rows[-1]
    checks: list[tuple[str, str, bool]] = []
    for row in rows:
        if row.size >= 1_000:  # below, reading the job modules once is most of the time
            checks.append(
                (
                    f"parse ≤ {PARSE_MS:g} ms/schedule at {row.size:,}",
                    f"{row.parse_ms:.3f} ms",
                    row.parse_ms <= PARSE_MS,
                )
            )
    big = by_size.get(10_000, largest)
    suffix = "" if big.size == 10_000 else f" (capped: measured at {big.size:,})"
    checks += [
        (
            f"--check of 10,000 ≤ {CHECK_10K_S:g} s{suffix}",
            f"{big.check_s:.2f} s",
            big.check_s <= CHECK_10K_S,
        ),
        (
            f"start-up of 10,000 ≤ {STARTUP_10K_S:g} s{suffix}",
            f"{big.startup_s:.2f} s",
            big.startup_s <= STARTUP_10K_S,
        ),
    ]
    for size, target in BURST_S.items():
        if size in by_size:
            last = by_size[size].live_last_s
            checks.append(
                (f"live: {size:,} due at once, last push ≤ {target * 1000:g} ms", f"{last * 1000:.0f} ms", last <= target)
            )
    checks.append(
        (
            f"idle CPU at 10,000 ≤ {IDLE_10K_S_PER_MIN:g} s/min{suffix}",
            f"{big.idle_s_per_min:.3f} s/min",
            big.idle_s_per_min <= IDLE_10K_S_PER_MIN,
        )
    )
    once = all(r.exactly_once and r.live_pushed == r.live_queue == r.size for r in rows)
    checks.append(("exactly once at every size (pass, replay, live)", "yes" if once else "NO", once))
    print()
    for label, figure, ok in checks:
        print(f"{label:<48} {figure:>14}  {'ok' if ok else 'MISSED'}")
    print("(Redis bytes per run of history: `python -m bench memory`)")


if __name__ == "__main__":
    run()
