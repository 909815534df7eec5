"""Worker benchmark (issue 4): trivial jobs through `python -m jobs.worker` vs stock `rq worker`.

All are forking workers on the same Redis; throughput = jobs / (last end − first start), so
process start-up is excluded. Three runs:
- stock `rq worker` CLI on `bench.probe.noop`: the smallest possible process and job (a real
  app job would make its horses import the app stack each time: ~4 jobs/s here);
- stock `rq.Worker` with the app and jobs preloaded (bench/stock_worker.py) running
  `jobs.diagnostics.sleep(0)`: same process size and fork cost as Cronwork's — the baseline
  for what Cronwork's runtime itself costs;
- `python -m jobs.worker` running the same function as scheduled runs (app context, overlap
  lock, ledger outcome + attempt records).
"""

from __future__ import annotations

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


def run(count: int = 300) -> None:
    """Jobs/s of both workers over `count` trivial jobs each, and the overhead ratio."""
    print(f"\n== worker throughput, {count} trivial jobs, one forking worker each")
    with redis_server() as server, tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        env = process_env(server.url, base)
        start(python("-m", "flask", "--app", "app", "db", "upgrade"), env, base / "db.log").wait()
        conn = Redis.from_url(server.url)
        queue = json_queue("bench", conn)

        stock_ids = [queue.enqueue("bench.probe.noop").id for _ in range(count)]
        rq_bin = str(Path(python()[0]).parent / "rq")
        _run_worker([rq_bin, "worker", "--burst", "-S", "rq.serializers.JSONSerializer", "-u", server.url, "bench"], env, base / "stock.log")
        stock = _throughput(conn, stock_ids)

        preloaded_ids = [queue.enqueue(FUNC, 0).id for _ in range(count)]
        _run_worker(python("-m", "bench.stock_worker", "bench"), env, base / "preloaded.log")
        preloaded = _throughput(conn, preloaded_ids)

        spec, keys = _spec(), Keys()
        tick = datetime.now(UTC).replace(microsecond=0)
        ours_ids = []
        for i in range(count):
            at = tick + timedelta(seconds=i)
            job = build_run_job(conn, spec, at, keys.run_id(spec.name, int(at.timestamp())), "bench")
            ours_ids.append(queue.enqueue_job(job).id)
        _run_worker(python("-m", "jobs.worker", "--burst", "bench"), env, base / "cronwork.log")
        ours = _throughput(conn, ours_ids)
        recorded = conn.zcard(keys.ledger(spec.name))

    overhead = (preloaded - ours) / preloaded * 100
    print(f"stock rq worker CLI, noop:          {stock:7.1f} jobs/s")
    print(f"stock rq.Worker, app preloaded:     {preloaded:7.1f} jobs/s")
    print(f"cronwork jobs.worker, scheduled:    {ours:7.1f} jobs/s   (ledger records: {recorded})")
    print(
        f"runtime overhead vs preloaded stock: {overhead:.1f}%  (ratio {ours / preloaded:.2f}; target ≤ 20%)"
    )
    print(
        f"vs the bare stock CLI on a no-op:    {(stock - ours) / stock * 100:.1f}%  (ratio {ours / stock:.2f})"
    )


if __name__ == "__main__":
    run()
