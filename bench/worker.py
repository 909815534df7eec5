"""Worker benchmark (issue 11, part 5): Cronwork's worker against a preloaded stock rq.Worker.

Both are forking workers on the same Redis, in burst mode, running the same function
(`jobs.diagnostics.sleep(0)`) the same number of times, in processes that loaded the same app
and job modules and froze them (bench/stock_worker.py), so both pay the same fork. Cronwork's
runs are enqueued as the scheduler does (run meta, ledger record, overlap lock, outcome and
attempt records). The two alternate for several rounds (ABBA: each goes first as often) and are
compared per round; one round of either swings by 20 % on a shared machine, a pair far less.

Per worker and round:
- ms per job: (end of the last job − start of the first job after the warm-up) / jobs after the
  warm-up; process start-up and the warm-up jobs (first fork, first script load) are excluded;
- round trips per job: Redis's read events (INFO `total_reads_processed`: one per request or
  pipeline a client sends) and commands, over the whole process, less an empty burst run of
  the same worker (start-up and shutdown), divided by the jobs;
- CPU ms per job: the worker and its horses (rusage of waited children), less the empty run;
  far steadier than wall time when other processes share the machine.

Also measured once: the bare `rq worker` CLI on `bench.probe.noop`, the smallest process and
job (a real app job would make its horses import the app stack each time).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq.job import JobStatus

from bench.harness import process_env, python, redis_server, start
from cronwork.keys import Keys
from cronwork.runjob import build_run_job
from cronwork.runs import Trigger
from cronwork.serializer import JSONJob, json_queue
from cronwork.spec import OverlapPolicy, ScheduleSpec
from cronwork.timing import CronTrigger

FUNC = "jobs.diagnostics.sleep"
QUEUE = "bench"
WARMUP = 20  # jobs of each round left out of the timing
TARGET = 10.0  # % overhead, issue 11


def _spec() -> ScheduleSpec:
    return ScheduleSpec(
        name="bench_noop",
        func=FUNC,
        trigger=CronTrigger.parse("* * * * *"),
        timezone="UTC",
        queue=QUEUE,
        timeout=30,
        retries=0,
        retry_backoff=(30,),
        misfire="skip",
        misfire_grace=600,
        overlap=OverlapPolicy.SKIP,
        enabled=True,
        pause_after_failures=0,
        args=(0,),
    )


@dataclass
class Usage:
    """What one worker process cost: CPU of it and its horses, Redis reads and commands."""

    cpu: float = 0.0
    reads: int = 0
    commands: int = 0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu - other.cpu, self.reads - other.reads, self.commands - other.commands)


@dataclass
class Contender:
    """One of the compared workers and its per-round figures."""

    label: str
    args: list[str]
    idle: Usage = field(default_factory=Usage)  # an empty burst run: start-up and shutdown
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    commands: list[float] = field(default_factory=list)


def _snapshot(conn: Redis) -> Usage:
    # INFO is itself one read and one command: negligible against hundreds of jobs.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = conn.info("stats")
    return Usage(
        children.ru_utime + children.ru_stime,
        int(stats["total_reads_processed"]),
        int(stats["total_commands_processed"]),
    )


def _ms_per_job(conn: Redis, job_ids: list[str], warmup: int) -> float:
    jobs = [j for j in JSONJob.fetch_many(job_ids, connection=conn) if j is not None]
    statuses = Counter(JobStatus(j.get_status()).value for j in jobs)
    if len(jobs) != len(job_ids) or statuses != {JobStatus.FINISHED.value: len(job_ids)}:
        raise RuntimeError(f"not every job finished: {dict(statuses)} of {len(job_ids)}")
    spans = sorted((j.started_at, j.ended_at) for j in jobs if j.started_at and j.ended_at)
    assert len(spans) == len(jobs), "a finished job without its start or end time"
    timed = spans[warmup:]
    last = max(ended for _, ended in timed)
    return (last - timed[0][0]).total_seconds() * 1000 / len(timed)


def _run(args: list[str], env: dict[str, str], log: Path, conn: Redis) -> Usage:
    before = _snapshot(conn)
    proc = start(args, env, log)
    if proc.wait(600) != 0:
        raise RuntimeError(f"worker failed, see {log}")
    return _snapshot(conn) - before


def _stock_batch(conn: Redis, count: int) -> list[str]:
    queue = json_queue(QUEUE, conn)
    return [queue.enqueue(FUNC, 0).id for _ in range(count)]


def _scheduled_batch(conn: Redis, count: int, day: int) -> list[str]:
    """`count` runs enqueued as the scheduler does, on ticks no other batch uses."""
    spec, keys = _spec(), Keys()
    queue = json_queue(QUEUE, conn)
    tick = datetime.now(UTC).replace(microsecond=0) + timedelta(days=day)
    ids = []
    for i in range(count):
        at = tick + timedelta(seconds=i)
        job = build_run_job(conn, spec, at, keys.run_id(spec.name, int(at.timestamp())), Trigger.SCHEDULE)
        ids.append(queue.enqueue_job(job).id)
    return ids


def _round(worker: Contender, conn: Redis, env: dict[str, str], base: Path, count: int, round_: int) -> None:
    if worker.label == "stock":
        ids = _stock_batch(conn, count)
    else:
        ids = _scheduled_batch(conn, count, day=round_)
    log = base / f"{worker.label}{round_}.log"
    used = _run(worker.args, env, log, conn) - worker.idle
    try:
        worker.ms.append(_ms_per_job(conn, ids, WARMUP))
    except RuntimeError as exc:
        raise RuntimeError(
            f"{worker.label}, round {round_}: {exc}; its log ends:\n{log.read_text()[-4000:]}"
        ) from None
    worker.cpu_ms.append(used.cpu * 1000 / count)
    worker.reads.append(used.reads / count)
    worker.commands.append(used.commands / count)


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def run(count: int = 300, rounds: int = 6) -> None:
    """ms per job, round trips and CPU of each worker over `count` trivial jobs, and the overhead.

    Overhead = extra time per job of Cronwork's worker over the preloaded stock one, as a share
    of the stock time (the throughput loss is a little smaller: 1 − 1/(1 + overhead)).
    """
    print(
        f"\n== worker overhead: {count} trivial jobs ({WARMUP} warm-up) per round, "
        f"one forking worker each, {rounds} rounds alternated"
    )
    with redis_server() as server, tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        env = process_env(server.url, base)
        start(python("-m", "flask", "--app", "app", "db", "upgrade"), env, base / "db.log").wait()
        conn = Redis.from_url(server.url)

        stock = Contender("stock", python("-m", "bench.stock_worker", QUEUE))
        ours = Contender("cronwork", python("-m", "jobs.worker", "--burst", QUEUE))
        for worker in (stock, ours):
            # Start-up and shutdown alone, the least of two (the first one warms the disk cache).
            worker.idle = min(
                (_run(worker.args, env, base / f"{worker.label}-idle.log", conn) for _ in range(2)),
                key=lambda usage: usage.cpu,
            )

        for round_ in range(rounds):
            order = (stock, ours) if round_ % 4 in (0, 3) else (ours, stock)
            for worker in order:
                _round(worker, conn, env, base, count, round_)
        recorded = conn.zcard(Keys().ledger(_spec().name))

        cli_ids = [json_queue(QUEUE, conn).enqueue("bench.probe.noop").id for _ in range(count)]
        rq_bin = str(Path(python()[0]).parent / "rq")
        cli = [rq_bin, "worker", "--burst", "-S", "rq.serializers.JSONSerializer", "-u", server.url, QUEUE]
        _run(cli, env, base / "cli.log", conn)
        bare = _ms_per_job(conn, cli_ids, WARMUP)

    ratios = [o / s for o, s in zip(ours.ms, stock.ms, strict=True)]
    overhead = (statistics.median(ratios) - 1) * 100
    of_medians = (statistics.median(ours.ms) / statistics.median(stock.ms) - 1) * 100
    cpu_overhead = (statistics.median(ours.cpu_ms) / statistics.median(stock.cpu_ms) - 1) * 100

    print(f"{'':34}{'ms/job':>8}{'CPU ms/job':>12}{'round trips/job':>17}{'commands/job':>14}")
    for worker, name in (
        (stock, "stock rq.Worker, app preloaded"),
        (ours, "cronwork jobs.worker, scheduled"),
    ):
        print(
            f"{name:34}{statistics.median(worker.ms):8.2f}{statistics.median(worker.cpu_ms):12.2f}"
            f"{statistics.median(worker.reads):17.1f}{statistics.median(worker.commands):14.1f}"
        )
    print(f"  ms/job per round, stock:    {_values(stock.ms)}")
    print(f"  ms/job per round, cronwork: {_values(ours.ms)}  (ledger records: {recorded})")
    print(f"  cronwork/stock per round:   {', '.join(f'{r:.3f}' for r in ratios)}")
    print(
        f"runtime overhead vs preloaded stock: {overhead:+.1f}% (median of the rounds' ratios; "
        f"ratio of medians {of_medians:+.1f}%; CPU {cpu_overhead:+.1f}%)  target ≤ {TARGET:.0f}%"
    )
    print(f"bare `rq worker` CLI on a no-op:     {bare:.2f} ms/job (the floor: no app in the process)")


if __name__ == "__main__":
    run()
