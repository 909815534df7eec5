"""Worker benchmark (issue 4): trivial jobs through `python -m jobs.worker` vs stock `rq worker`.

All are forking workers on the same Redis; throughput = jobs / (last end − first start), so
process start-up is excluded. The two compared workers alternate for a few rounds and their
medians are compared (one round swings by 20 % on a shared machine). Three workers:
- stock `rq worker` CLI on `bench.probe.noop`: the smallest possible process and job (a real
  app job would make its horses import the app stack each time: ~4 jobs/s here);
- stock `rq.Worker` with the app and jobs preloaded (bench/stock_worker.py) running
  `jobs.diagnostics.sleep(0)`: same process size and fork cost as Cronwork's — the baseline
  for what Cronwork's runtime itself costs;
- `python -m jobs.worker` running the same function as scheduled runs (app context, overlap
  lock, ledger outcome + attempt records).
"""

from __future__ import annotations

import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis

from bench.harness import process_env, python, redis_server, start
from cronwork.keys import Keys
from cronwork.runjob import build_run_job
from cronwork.serializer import JSONJob, json_queue
from cronwork.spec import ScheduleSpec
from cronwork.timing import CronTrigger

FUNC = "jobs.diagnostics.sleep"


def _spec() -> ScheduleSpec:
    return ScheduleSpec(
        name="bench_noop",
        func=FUNC,
        trigger=CronTrigger.parse("* * * * *"),
        timezone="UTC",
        queue="bench",
        timeout=30,
        retries=0,
        retry_backoff=(30,),
        misfire="skip",
        misfire_grace=600,
        overlap="skip",
        enabled=True,
        pause_after_failures=0,
        args=(0,),
    )


def _throughput(conn: Redis, job_ids: list[str]) -> float:
    jobs = [j for j in JSONJob.fetch_many(job_ids, connection=conn) if j is not None]
    assert all(j.get_status() == "finished" for j in jobs), "not every job finished"
    first = min(j.started_at for j in jobs)
    last = max(j.ended_at for j in jobs)
    return len(jobs) / (last - first).total_seconds()


def _run_worker(args: list[str], env: dict[str, str], log: Path) -> None:
    proc = start(args, env, log)
    if proc.wait(600) != 0:
        raise RuntimeError(f"worker failed, see {log}")


def _scheduled_batch(conn: Redis, queue_name: str, count: int, day: int) -> list[str]:
    """`count` runs enqueued as the scheduler does, on ticks no other batch uses."""
    spec, keys = _spec(), Keys()
    queue = json_queue(queue_name, conn)
    tick = datetime.now(UTC).replace(microsecond=0) + timedelta(days=day)
    ids = []
    for i in range(count):
        at = tick + timedelta(seconds=i)
        job = build_run_job(conn, spec, at, keys.run_id(spec.name, int(at.timestamp())), "bench")
        ids.append(queue.enqueue_job(job).id)
    return ids


def run(count: int = 300, rounds: int = 3) -> None:
    """Jobs/s of each worker over `count` trivial jobs, and the overhead ratio.

    The preloaded stock worker and Cronwork's alternate for `rounds` rounds and the medians
    are compared: on a shared machine one round of each swings by 20 % or more.
    """
    print(f"\n== worker throughput, {count} trivial jobs, one forking worker each, median of {rounds}")
    with redis_server() as server, tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        env = process_env(server.url, base)
        start(python("-m", "flask", "--app", "app", "db", "upgrade"), env, base / "db.log").wait()
        conn = Redis.from_url(server.url)
        queue = json_queue("bench", conn)

        stock_ids = [queue.enqueue("bench.probe.noop").id for _ in range(count)]
        rq_bin = str(Path(python()[0]).parent / "rq")
        cli = [rq_bin, "worker", "--burst", "-S", "rq.serializers.JSONSerializer", "-u", server.url, "bench"]
        _run_worker(cli, env, base / "stock.log")
        stock = _throughput(conn, stock_ids)

        preloaded_runs, ours_runs = [], []
        for round_ in range(rounds):
            preloaded_ids = [queue.enqueue(FUNC, 0).id for _ in range(count)]
            _run_worker(python("-m", "bench.stock_worker", "bench"), env, base / f"preloaded{round_}.log")
            preloaded_runs.append(_throughput(conn, preloaded_ids))
            ours_ids = _scheduled_batch(conn, "bench", count, day=round_)
            _run_worker(python("-m", "jobs.worker", "--burst", "bench"), env, base / f"cronwork{round_}.log")
            ours_runs.append(_throughput(conn, ours_ids))
        recorded = conn.zcard(Keys().ledger(_spec().name))

    preloaded, ours = statistics.median(preloaded_runs), statistics.median(ours_runs)
    overhead = (preloaded - ours) / preloaded * 100

    def rounds_text(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    print(f"stock rq worker CLI, noop:          {stock:7.1f} jobs/s")
    print(
        f"stock rq.Worker, app preloaded:     {preloaded:7.1f} jobs/s   (rounds: {rounds_text(preloaded_runs)})"
    )
    print(
        f"cronwork jobs.worker, scheduled:    {ours:7.1f} jobs/s   (rounds: {rounds_text(ours_runs)}; "
        f"ledger records: {recorded})"
    )
    print(
        f"runtime overhead vs preloaded stock: {overhead:.1f}%  (ratio {ours / preloaded:.2f}; target ≤ 20%)"
    )
    print(
        f"vs the bare stock CLI on a no-op:    {(stock - ours) / stock * 100:.1f}%  (ratio {ours / stock:.2f})"
    )


if __name__ == "__main__":
    run()
