"""Peer benchmark (issues 11, 16): Cronwork against stock schedulers, measured the same way for all.

    python -m bench peers      (PEERS_SECONDS, default 60; PEERS_SYSTEMS, default all;
                                PEERS_SCENARIOS, default normal,skew; PEERS_SKEW_SECONDS,
                                default 30; PEERS_SKEW, default +2s)
    python -m bench.peers [--seconds N] [--systems cronwork,rqscheduler,rqcron,apscheduler]
                          [--scenarios normal,skew] [--skew-seconds N] [--skew +2s]

Two scenarios, one after the other, each printing its table when done: `normal` (below) and
`skew` (issue 16, further below).

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

Clock skew (`skew`): the same two replicas, schedules and worker per system, with one
replica's host clock shifted (`replica-a`, FAKETIME="+2s" through libfaketime,
bench/faketime.py; an LD_PRELOAD, so it works the same for the `.bench-venv` interpreter; the
run fails unless that process has libfaketime mapped), no kill, --skew-seconds of counted ticks.
Redis, the worker and the benchmark keep the true clock. One difference: APScheduler's skewed
replica also gets FAKETIME_DONT_FAKE_MONOTONIC=1, because libfaketime 0.9.10 makes Python's
`Event.wait(timeout)`, where its BlockingScheduler sleeps, never return (systems.py); the
others sleep with `time.sleep`, which that variable breaks instead. From the same MONITOR stream:

- intended tick of a push: the tick the system meant it for, read from what the system
  records, never floor(push time) (an early push would count for the previous tick):
  Cronwork: the job id `cronwork-<schedule>-<epoch>` (its meta `tick` is the same number);
  rq-scheduler: the job's score in `rq:scheduler:scheduled_jobs` as last ZADDed before the
  push; rq cron: `next_enqueue_time` of the cron job (by queue) in the pushing replica's own
  `rq:cron_scheduler:<name>` hash (`cron_jobs`) as last saved before the push; APScheduler 3:
  the run time its executor logs right before calling the job function, put into the rq job id
  by bench/peer_jobs.py (APScheduler does not pass it to the function). Details: intent.py.
  A push none of these explains goes to the nearest tick and is counted as FLAGGED.
- early pushes: pushes that landed before their intended tick by Redis's clock (the MONITOR
  timestamp), with the earliest; duplicates: ticks pushed more than once; missed: ticks of the
  window never pushed; lateness p50/p99 (signed: negative is early) of each tick's first push.
- pushes by replica: the client connection of each counted push traced to its process (as
  for the kill), while the replicas still run.
- every-minute ticks: usually 0 or 1 in a 30 s window.

Figures are from one shared machine: noisy run to run, comparable within a run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench import faketime
from bench.harness import redis_server
from bench.peers.report import Failure, render, render_skew
from bench.peers.runner import Outcome, SkewOutcome, SystemFailed, run_skew, run_system
from bench.peers.systems import SYSTEMS, System
from bench.peers.venv import BenchVenvError

DEFAULT_SECONDS = 60
DEFAULT_SKEW_SECONDS = 30
DEFAULT_SKEW = "+2s"
MIN_SECONDS = 10
SCENARIOS = ("normal", "skew")


def run() -> None:
    """`python -m bench peers`: its options from PEERS_* environment variables."""
    argv = ["--seconds", os.environ.get("PEERS_SECONDS", str(DEFAULT_SECONDS))]
    for variable, option in (
        ("PEERS_SYSTEMS", "--systems"),
        ("PEERS_SCENARIOS", "--scenarios"),
        ("PEERS_SKEW_SECONDS", "--skew-seconds"),
        ("PEERS_SKEW", "--skew"),
    ):
        if value := os.environ.get(variable):
            argv.append(f"{option}={value}")  # one token: "+2s" / "-2s" never read as an option
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


def _scenarios(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}"
        )
    return [n for n in SCENARIOS if n in names]  # always normal first


def _prepared(system: System, folder: Path) -> Path:
    """The system's folder, its install done first (outside the measured start-up)."""
    if system.prepare is not None:
        system.prepare()
    folder.mkdir(parents=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and systems, print a table per scenario; 1 when one failed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="counted ticks per system")
    parser.add_argument(
        "--systems", type=_systems, default=list(SYSTEMS), help="comma-separated, in run order (default: all)"
    )
    parser.add_argument(
        "--scenarios", type=_scenarios, default=list(SCENARIOS), help="normal, skew or both (default: both)"
    )
    parser.add_argument(
        "--skew-seconds",
        type=int,
        default=DEFAULT_SKEW_SECONDS,
        help="counted ticks per system, skew scenario",
    )
    parser.add_argument("--skew", default=DEFAULT_SKEW, help="FAKETIME offset of the skewed replica (+2s)")
    args = parser.parse_args(argv)
    if args.seconds < MIN_SECONDS or args.skew_seconds < MIN_SECONDS:
        parser.error(f"--seconds and --skew-seconds must be at least {MIN_SECONDS}")
    failed = False
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="peers-") as folder:
        if "normal" in args.scenarios:
            outcomes: list[Outcome] = []
            failures: list[Failure] = []
            for system in args.systems:
                print(f"peers: {system.label} for {args.seconds} s ...", flush=True)
                try:
                    system_folder = _prepared(system, Path(folder) / "normal" / system.key)
                    outcomes.append(run_system(system, server, args.seconds, system_folder))
                except (SystemFailed, BenchVenvError) as exc:
                    failures.append(Failure(system.key, system.label, str(exc)))
            for line in render(outcomes, failures, args.seconds):
                print(line, flush=True)
            failed |= bool(failures)
        if "skew" in args.scenarios:
            skews: list[SkewOutcome] = []
            skew_failures: list[Failure] = []
            for system in args.systems:
                print(
                    f"peers: {system.label}, one replica {args.skew}, for {args.skew_seconds} s ...",
                    flush=True,
                )
                try:
                    if faketime.library() is None:
                        raise SystemFailed("libfaketime is not installed (Debian package `faketime`)")
                    system_folder = _prepared(system, Path(folder) / "skew" / system.key)
                    skews.append(run_skew(system, server, args.skew_seconds, system_folder, args.skew))
                except (SystemFailed, BenchVenvError) as exc:
                    skew_failures.append(Failure(system.key, system.label, str(exc)))
            for line in render_skew(skews, skew_failures, args.skew_seconds, args.skew):
                print(line, flush=True)
            failed |= bool(skew_failures)
    return 1 if failed else 0
