"""Domain-job benchmarks (issue 5), figures and ratios printed in one run:

- check_task_warnings + update_time_progress over N processing tasks vs the seed's row-by-row
  code (bench/reference_seed004.py) on the same SQLite file and the same Redis;
- peak RSS growth of both jobs over a larger table, in a fresh process (streaming check);
- due rentals shipped with the local carrier by two concurrent processes vs one, and the
  number of double bookings (must be 0).

`python -m bench domain` runs the full sizes (100,000 / 1,000,000 / 10,000); sizes come from
BENCH_DOMAIN_TASKS, BENCH_DOMAIN_REFERENCE_TASKS, BENCH_DOMAIN_RSS_TASKS (0 skips) and
BENCH_DOMAIN_RENTALS, or from the options of `python -m bench.domain`; a quick run:
`python -m bench.domain --tasks 10000 --reference-tasks 1000 --rss-tasks 0 --rentals 1000`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from flask import Flask
from redis import Redis
from sqlalchemy import func, select

from app import create_app

# The demo seed's own row builders: the benchmark data is the demo data, at scale.
from app.demo.rentals import rental_row
from app.demo.rows import insert_rows, scenarios
from app.demo.tasks import TASK_SCENARIOS, TIME_FRACTIONS, task_row
from app.demo.users import user_rows
from app.embedded_postgres import EmbeddedPostgres, PostgresNotAvailable
from app.extensions import db
from app.models import (
    Notification,
    Rental,
    RentalStatus,
    ShipmentEvent,
    ShipmentEventKind,
    Task,
    User,
    now_utc,
)
from app.services import tasks
from app.services.carriers import LocalCarrier, LocalMarketplace
from app.services.shipments import process_scheduled_shipments
from bench import reference_seed004
from bench.harness import redis_server

TARGET_SECONDS = 3.0
TARGET_RATIO = 20.0
TARGET_RSS_MB = 150.0
PROCESSING = {k: TASK_SCENARIOS[k] for k in TIME_FRACTIONS}  # only processing-task scenarios


@dataclass(frozen=True)
class Sizes:
    tasks: int = 100_000
    reference_tasks: int = 5_000  # the seed's code is O(n²): see bench_tasks
    rss_tasks: int = 1_000_000
    rentals: int = 10_000

    @classmethod
    def from_env(cls) -> Sizes:
        env = os.environ
        return cls(
            int(env.get("BENCH_DOMAIN_TASKS", cls.tasks)),
            int(env.get("BENCH_DOMAIN_REFERENCE_TASKS", cls.reference_tasks)),
            int(env.get("BENCH_DOMAIN_RSS_TASKS", cls.rss_tasks)),
            int(env.get("BENCH_DOMAIN_RENTALS", cls.rentals)),
        )


def _app(db_file: Path | str, redis_url: str) -> Flask:
    """The app on a SQLite file (a Path) or any database URL (a str)."""
    url = f"sqlite:///{db_file}" if isinstance(db_file, Path) else db_file
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url})


def _seed_tasks(n: int, now: datetime) -> None:
    db.create_all()
    insert_rows(User, user_rows(now))
    users = list(db.session.scalars(select(User.id)))
    rng = random.Random(4)
    insert_rows(Task, (task_row(rng, now, k, i, users) for i, k in enumerate(scenarios(rng, PROCESSING, n))))
    db.session.commit()


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def _forget_warnings(redis: Redis) -> None:
    db.session.execute(Notification.__table__.delete())
    db.session.commit()
    redis.flushdb()


def _task_figures(database: Path | str, n: int, redis_url: str, reference: bool) -> dict[str, Any]:
    """Seed `n` processing tasks; time both jobs (and the seed's code when `reference`)."""
    app = _app(database, redis_url)
    figures: dict[str, Any] = {"n": n}
    with app.app_context():
        redis = Redis.from_url(redis_url)
        redis.flushdb()  # warning keys of an earlier database's tasks (same ids) must not count
        now = now_utc()
        _seed_tasks(n, now)
        # Each job reads the clock when it starts, as on a worker (not one shared `now`).
        _, figures["progress"] = _timed(tasks.update_time_progress, now_utc())
        warned, figures["warn"] = _timed(tasks.check_task_warnings, now_utc(), redis)
        figures["sent"] = warned["notified"]
        again, figures["again"] = _timed(tasks.check_task_warnings, now_utc(), redis)
        figures["sent_again"] = again["notified"]
        if reference:
            _forget_warnings(redis)
            db.session.remove()
            _, figures["ref_progress"] = _timed(reference_seed004.update_time_progress, now_utc())
            db.session.remove()
            figures["ref_sent"], figures["ref_warn"] = _timed(
                reference_seed004.check_task_warnings, now_utc(), redis
            )
            db.session.remove()
        db.engine.dispose()
    return figures


def _row(label: str, n: int, progress: float, warn: float, sent: int) -> None:
    print(
        f"{label:<10} {n:>9,} tasks  update_time_progress {progress:7.2f} s  "
        f"check_task_warnings {warn:7.2f} s  total {progress + warn:7.2f} s  ({sent:,} warnings)"
    )


def bench_tasks(label: str, n: int, reference_n: int, databases: dict[str, Path | str], redis_url: str) -> None:
    """Both task jobs vs the seed's code on each database (`small`/`big`: reference size, n)."""
    reference_n = min(reference_n, n)
    print(f"\n== check_task_warnings + update_time_progress: cronwork vs the seed's row-by-row code ({label})")
    small = _task_figures(databases["small"], reference_n, redis_url, reference=True)
    big = small if reference_n == n else _task_figures(databases["big"], n, redis_url, reference=False)
    ref = small["ref_progress"] + small["ref_warn"]
    _row("reference", reference_n, small["ref_progress"], small["ref_warn"], small["ref_sent"])
    _row("cronwork", reference_n, small["progress"], small["warn"], small["sent"])
    same = "same warnings" if small["ref_sent"] == small["sent"] else "DIFFERENT warning counts"
    print(f"ratio at {reference_n:,} tasks: {ref / (small['progress'] + small['warn']):.0f}x  ({same})")
    ours = big["progress"] + big["warn"]
    if big is not small:
        _row("cronwork", n, big["progress"], big["warn"], big["sent"])
        # The seed's code is not run at full size: each per-task commit expires every loaded
        # task, so its time grows with n² (hours at 100k). Linear scaling is a lower bound.
        bound = ref * n / reference_n
        print(
            f"reference at {n:,} tasks: ≥ {bound:,.0f} s (linear scaling of the {reference_n:,} run; "
            f"really worse) → ratio ≥ {bound / ours:,.0f}x"
        )
    ratio = (ref * n / reference_n) / ours
    print(
        f"second check_task_warnings run at {n:,}: {big['again']:.2f} s, {big['sent_again']} sent  "
        f"(targets: ≤ {TARGET_SECONDS:g} s at 100,000, ≥ {TARGET_RATIO:g}x) → "
        f"{'met' if ours <= TARGET_SECONDS and ratio >= TARGET_RATIO else 'MISSED'}"
    )


def _rss_child(db_file: str, redis_url: str, results: Any) -> None:
    """In a fresh process: RSS before, peak RSS after both jobs (KiB → MB)."""
    app = _app(Path(db_file), redis_url)
    with app.app_context():
        redis = Redis.from_url(redis_url)
        db.session.scalar(select(func.count()).select_from(Task))  # connections, imports, caches warm
        before = _current_rss_mb()
        _, t_progress = _timed(tasks.update_time_progress, now_utc())
        warned, t_warn = _timed(tasks.check_task_warnings, now_utc(), redis)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.put({"before": before, "peak": peak, "seconds": t_progress + t_warn, **warned})


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_rss(n: int, folder: Path, redis_url: str) -> None:
    print(f"\n== memory: both task jobs over {n:,} processing tasks, in a fresh process")
    app = _app(folder / "rss.db", redis_url)
    with app.app_context():
        _, seeded = _timed(_seed_tasks, n, now_utc())
        db.session.remove()
        db.engine.dispose()
    print(f"seeded in {seeded:.1f} s")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_rss_child, args=(str(folder / "rss.db"), redis_url, results))
    child.start()
    figures = results.get(timeout=3600)
    child.join()
    growth = figures["peak"] - figures["before"]
    print(
        f"RSS before {figures['before']:.0f} MB, peak {figures['peak']:.0f} MB: growth {growth:.0f} MB "
        f"in {figures['seconds']:.1f} s ({figures['late']:,} late tasks)  "
        f"(target ≤ {TARGET_RSS_MB:g} MB) → {'met' if growth <= TARGET_RSS_MB else 'MISSED'}"
    )


def _ship_child(db_file: str, redis_url: str, name: str, barrier: Barrier, results: Any) -> None:
    app = _app(Path(db_file), redis_url)
    with app.app_context():
        db.session.scalar(select(func.count()).select_from(Rental))
        barrier.wait()
        summary, seconds = _timed(
            process_scheduled_shipments, now_utc(), LocalCarrier(), LocalMarketplace(), name
        )
        results.put({"name": name, "seconds": seconds, **summary})


def _ship(db_file: Path, redis_url: str, runs: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(runs), ctx.Queue()
    children = [
        ctx.Process(target=_ship_child, args=(str(db_file), redis_url, f"run{i}", barrier, results))
        for i in range(runs)
    ]
    for child in children:
        child.start()
    figures = [results.get(timeout=3600) for _ in children]
    for child in children:
        child.join()
    return figures


def bench_shipments(n: int, folder: Path, redis_url: str) -> None:
    print(f"\n== {n:,} due rentals shipped with the local carrier (SQLite, separate processes)")
    wall: dict[int, float] = {}
    for runs in (1, 2):
        db_file = folder / f"rentals{runs}.db"
        app = _app(db_file, redis_url)
        with app.app_context():
            db.create_all()
            rng, now = random.Random(0), now_utc()
            insert_rows(Rental, (rental_row(rng, now, "due", i) for i in range(n)))
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        figures = _ship(db_file, redis_url, runs)
        wall[runs] = max(f["seconds"] for f in figures)
        with app.app_context():
            doubles = db.session.scalar(
                select(func.count()).select_from(
                    select(ShipmentEvent.rental_id)
                    .where(ShipmentEvent.kind == ShipmentEventKind.CARRIER_BOOKING)
                    .group_by(ShipmentEvent.rental_id)
                    .having(func.count() > 1)
                    .subquery()
                )
            )
            shipped = db.session.scalar(
                select(func.count()).select_from(Rental).where(Rental.status == RentalStatus.SHIPPED)
            )
        detail = "  ".join(
            f"{f['name']}: {f['success']:,} shipped, {f['skipped']:,} skipped, {f['failed']} failed"
            for f in sorted(figures, key=lambda f: f["name"])
        )
        print(
            f"{runs} run(s): {wall[runs]:6.2f} s ({n / wall[runs]:,.0f} rentals/s)  shipped {shipped:,}/{n:,}  "
            f"double bookings {doubles}  [{detail}]"
        )
    print(f"ratio one run / two concurrent runs: {wall[1] / wall[2]:.2f}x  (target: 0 double bookings)")


def run(sizes: Sizes | None = None) -> None:
    """Every domain benchmark at `sizes` (default: from the environment, else full size)."""
    sizes = sizes or Sizes.from_env()
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if sizes.tasks:
            files = {"small": folder / "tasks_small.db", "big": folder / "tasks_big.db"}
            bench_tasks("SQLite", sizes.tasks, sizes.reference_tasks, dict(files), server.url)
            _bench_tasks_postgresql(sizes, server.url)
        if sizes.rss_tasks:
            bench_rss(sizes.rss_tasks, folder, server.url)
        if sizes.rentals:
            bench_shipments(sizes.rentals, folder, server.url)


def _bench_tasks_postgresql(sizes: Sizes, redis_url: str) -> None:
    """The same task comparison on PostgreSQL, when its server binaries are installed."""
    try:
        postgres = EmbeddedPostgres().start()
    except PostgresNotAvailable as exc:
        print(f"\n(PostgreSQL not benchmarked: {exc})")
        return
    try:
        databases = {k: postgres.create_database(f"bench_tasks_{k}") for k in ("small", "big")}
        bench_tasks("PostgreSQL", sizes.tasks, sizes.reference_tasks, dict(databases), redis_url)
    finally:
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.domain", description=__doc__)
    default = Sizes.from_env()
    parser.add_argument("--tasks", type=int, default=default.tasks, help="0 skips")
    parser.add_argument("--reference-tasks", type=int, default=default.reference_tasks)
    parser.add_argument("--rss-tasks", type=int, default=default.rss_tasks, help="0 skips")
    parser.add_argument("--rentals", type=int, default=default.rentals, help="0 skips")
    args = parser.parse_args()
    run(Sizes(args.tasks, args.reference_tasks, args.rss_tasks, args.rentals))


if __name__ == "__main__":
    main()
