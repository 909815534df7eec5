"""Peer benchmark (issue 11): Cronwork against stock schedulers, measured the same way for all.

    python -m bench peers                 (PEERS_SECONDS, default 60; PEERS_SYSTEMS, default all)
    python -m bench.peers [--seconds N] [--systems cronwork,rqscheduler,rqcron,apscheduler]

One fresh bundled redis-server on a loopback port; the systems run one after another on it,
flushed before and after each: Cronwork (`python -m scheduler_boot`), stock rq-scheduler 0.14
(`rqscheduler -i 1`), RQ 3.0's `rq cron` and APScheduler 3 on a shared RedisJobStore (installed
in `.bench-venv/` on first use, see venv.py). Each runs two scheduler replicas, an every-second
and an every-minute schedule of a no-op job on queues of its own, and one worker.

Measured identically for every system, from a dedicated MONITOR connection (monitor.py):

- push: an RPUSH/LPUSH of a job id to `rq:queue:<the system's queue>`, at the server's clock.
  Attribution is by queue name, so it does not matter who pushes: a client, a MULTI/EXEC block
  or a server-side script (`[0 lua]` lines; their caller is the EVAL/EVALSHA line next to them).
- tick of a push: floor(push time) for the every-second schedule, the minute for the
  every-minute one (analysis.py). Exact while a push is less than one period late: a push over
  1 s late counts for the next tick (a duplicate there, a miss of its own). Ticks counted: the
  whole seconds of the window, which starts SETTLE s after the first push (and a live worker).
- duplicates: ticks pushed more than once; missed: ticks never pushed.
- lateness (tick → push) p50/p99 of each tick's first push, over the ticks before the kill.
- start latency (tick → start): rq's `started_at` of that first push's job, as the worker
  wrote it to the job hash (seen in MONITOR, paired with the push of the same job id), minus
  the tick; every worker here is rq's (Cronwork's subclasses it).
- the kill: at mid-window (mid-second) the replica that made the latest every-second push,
  found from its MONITOR client address (local port → socket inode in /proc → pid), is
  SIGKILLed; gap = the longest interval between consecutive every-second pushes from the last
  push before the kill to GAP_HORIZON s after it (`≥` when nothing came at all).

Figures are from one shared machine: noisy run to run, comparable within a run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.harness import redis_server
from bench.peers.report import Failure, render
from bench.peers.runner import Outcome, SystemFailed, run_system
from bench.peers.systems import SYSTEMS, System
from bench.peers.venv import BenchVenvError

DEFAULT_SECONDS = 60
MIN_SECONDS = 10


def run() -> None:
    """`python -m bench peers`: PEERS_SECONDS and PEERS_SYSTEMS from the environment."""
    argv = ["--seconds", os.environ.get("PEERS_SECONDS", str(DEFAULT_SECONDS))]
    if systems := os.environ.get("PEERS_SYSTEMS"):
        argv += ["--systems", systems]
    raise SystemExit(main(argv))


def _systems(text: str) -> list[System]:
    by_key = {s.key: s for s in SYSTEMS}
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(by_key)}"
        )
    return [by_key[k] for k in keys]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen systems, print the table; 1 when a system could not be measured."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="counted ticks per system")
    parser.add_argument(
        "--systems", type=_systems, default=list(SYSTEMS), help="comma-separated, in run order (default: all)"
    )
    args = parser.parse_args(argv)
    if args.seconds < MIN_SECONDS:
        parser.error(f"--seconds must be at least {MIN_SECONDS}")
    outcomes: list[Outcome] = []
    failures: list[Failure] = []
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="peers-") as folder:
        for system in args.systems:
            print(f"peers: {system.label} for {args.seconds} s ...", flush=True)
            try:
                if system.prepare is not None:
                    system.prepare()
                system_folder = Path(folder) / system.key
                system_folder.mkdir()
                outcomes.append(run_system(system, server, args.seconds, system_folder))
            except (SystemFailed, BenchVenvError) as exc:
                failures.append(Failure(system.key, system.label, str(exc)))
    for line in render(outcomes, failures, args.seconds):
        print(line)
    return 1 if failures else 0
