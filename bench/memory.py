"""`python -m bench memory`: Redis bytes one every-second schedule holds after 10,000 runs.

Real processes where it matters: two real `python -m jobs.worker` processes run every job
(each run ends `succeeded` through the worker's own recording), on a bundled Redis and a
SQLite database. The ticks are driven by an in-process scheduler whose clock advances one
second per pass, so 10,000 ticks take minutes, not hours; it hands out `STEP` ticks at a
time (fewer than `keep_runs`) and waits for the workers to finish them, as a worker that
keeps up would. At the end it sums `MEMORY USAGE` of every key the schedule's runs left
(run records, attempts, ledger index, RQ job hashes and results, and the share of RQ's
finished registry they hold) and checks the ops page still lists the newest runs.

Environment: BENCH_MEMORY_RUNS (default 10000).
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from redis import Redis
from rq.registry import FinishedJobRegistry

from app import create_app
from bench.harness import process_env, python, redis_server, start, stop
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.loader import BUILTIN_DEFAULTS, parse_schedule
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan

NAME = "every_second"
SCHEDULE = f"""
[schedules.{NAME}]
func = "jobs.system.health_check"
every = "1s"
overlap = "allow"
timeout = "30s"
"""
PASSWORD = "bench-password-0123456789"
STEP = 50  # ticks handed out before waiting for the workers (below keep_runs = 100)
TARGET_BYTES = 1_000_000


class SteppedClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def run() -> None:
    runs = int(os.environ.get("BENCH_MEMORY_RUNS", "10000"))
    print(f"\n== memory: one every-second schedule, {runs} runs through two real workers")
    keys = Keys()
    with redis_server() as server, tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        env = process_env(server.url, base, SCHEDULE)
        start(python("-m", "flask", "--app", "app", "db", "upgrade"), env, base / "db.log").wait()
        conn = Redis.from_url(server.url)
        first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=runs + 60)
        specs = parse_schedule(tomllib.loads(SCHEDULE), Path("schedule.toml")).specs
        apply_plan(conn, specs, keys, first - timedelta(seconds=1))
        keep = specs[NAME].keep_runs
        clock = SteppedClock(first.timestamp())
        scheduler = CronworkScheduler(conn, keys, clock=clock)
        ledger = Ledger(conn, keys)
        workers = [start(python("-m", "jobs.worker"), env, base / f"worker{i}.log") for i in range(2)]
        started = time.monotonic()
        try:
            done = 0
            while done < runs:
                for _ in range(min(STEP, runs - done)):
                    scheduler.enqueue_jobs()
                    clock.now += 1
                    done += 1
                _wait_until_finished(ledger, STEP)
                if done % 1000 == 0:
                    print(f"  {done} runs, {time.monotonic() - started:.0f} s", flush=True)
        finally:
            stop(*workers)
        held, counts = _bytes_of_schedule(conn, keys)
        page_ok = _page_shows_newest(server.url, base, keys, ledger)
    per_run = held / max(counts["records"], 1)
    verdict = "ok" if held <= TARGET_BYTES else "OVER TARGET"
    print(
        f"bytes held by the schedule: {held:,} ({per_run:,.0f} per kept run; target ≤ {TARGET_BYTES:,}: {verdict})\n"
        f"kept: {counts['records']} records, {counts['jobs']} RQ jobs, {counts['results']} results, "
        f"{counts['finished']} finished-registry entries (keep_runs = {keep})\n"
        f"ops page lists the newest run: {page_ok}"
    )


def _wait_until_finished(ledger: Ledger, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [r.get("state") for r in ledger.history(NAME, count)]
        if all(s == "succeeded" for s in states):
            return
        time.sleep(0.02)
    raise TimeoutError("the workers did not finish the runs handed out")


def _bytes_of_schedule(conn: Redis, keys: Keys) -> tuple[int, dict[str, int]]:
    """MEMORY USAGE of every key of the schedule's runs, and its share of shared registries."""
    total = 0
    counts = {"records": 0, "jobs": 0, "results": 0, "finished": 0}
    patterns = {
        "records": keys.run_record_prefix(NAME) + "*",
        "jobs": f"rq:job:{keys.run_id(NAME, 0)[:-1]}*",
        "results": f"rq:results:{keys.run_id(NAME, 0)[:-1]}*",
        "other": f"{keys.attempts_prefix(NAME)}*",
    }
    for kind, pattern in patterns.items():
        for key in conn.scan_iter(pattern, count=1000):
            total += int(conn.memory_usage(key) or 0)
            if kind in counts:
                counts[kind] += 1
    total += int(conn.memory_usage(keys.ledger(NAME)) or 0)
    finished = FinishedJobRegistry("default", connection=conn)
    counts["finished"] = finished.count
    total += int(conn.memory_usage(finished.key) or 0)
    return total, counts


def _page_shows_newest(redis_url: str, base: Path, keys: Keys, ledger: Ledger) -> bool:
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{base / 'bench.db'}",
            "SECRET_KEY": "bench",
            "ADMIN_TOKEN": "bench-token-0123456789abcdef",
            "ADMIN_USER": "bench",
            "ADMIN_PASSWORD": PASSWORD,
            "SCHEDULE_FILE": str(base / "schedule.toml"),
        }
    )
    newest = ledger.history(NAME, 1)[0]
    auth = "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    with app.test_client() as client:
        page = client.get(f"/schedules/{NAME}", headers={"Authorization": auth})
    # The page shows ticks in the schedule's zone (the default zone here).
    local = datetime.fromtimestamp(newest["tick"], ZoneInfo(BUILTIN_DEFAULTS["timezone"]))
    return page.status_code == 200 and local.strftime("%H:%M:%S") in page.text
