"""How each system under comparison is started: two scheduler replicas and one worker each.

Every system gets its own two queues (`peers_<key>_sec`, `peers_<key>_min`), an every-second
and an every-minute schedule of a no-op job, and only its process-level interface: a schedule
file and `python -m scheduler_boot` for Cronwork, the peers' own command lines otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq_scheduler import Scheduler

from bench.harness import process_env, python, start
from bench.peers.intent import APSCHEDULER_ID, CRONWORK_ID, CronHashTick, Intent, JobIdTick, ZsetScoreTick
from bench.peers.venv import bench_python

NOOP = "bench.probe.noop"  # the peers' job; Cronwork's must live in the jobs package
CRONWORK_SCHEDULE = """
[schedules.peers_second]
func = "jobs.diagnostics.sleep"
args = [0]
every = "1s"
overlap = "allow"
timeout = "30s"
queue = "{second}"

[schedules.peers_minute]
func = "jobs.diagnostics.sleep"
args = [0]
cron = "* * * * *"
overlap = "allow"
timeout = "30s"
queue = "{minute}"
"""
# croniter reads a sixth field as seconds (last): "* * * * * *" fires on every whole second.
RQ_CRON_CONFIG = """
from rq import cron

from bench.probe import noop

cron.register(noop, "{second}", cron="* * * * * *")
cron.register(noop, "{minute}", cron="* * * * *")
"""

Proc = subprocess.Popen[bytes]


@dataclass
class Stage:
    """One system's run: its Redis, folder and queues, and every process started for it."""

    key: str
    redis_url: str
    folder: Path
    started: list[Proc] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # pid → name (its log is <name>.log)
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)  # name → variables on top

    @property
    def second_queue(self) -> str:
        return f"peers_{self.key}_sec"

    @property
    def minute_queue(self) -> str:
        return f"peers_{self.key}_min"

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start a process logging to `<folder>/<name>.log`; it is stopped with the stage.

        `extra_env[name]` goes on top of its environment (the skew scenario's libfaketime).
        """
        env = {**(env or process_env(self.redis_url, self.folder)), **self.extra_env.get(name, {})}
        proc = start(args, env, self.folder / f"{name}.log")
        self.started.append(proc)
        self.names[proc.pid] = name
        return proc

    def describe(self, proc: Proc, lines: int = 5) -> str:
        """`name (pid)` and the last lines of its log, for an error message."""
        name = self.names.get(proc.pid, "?")
        try:
            text = (self.folder / f"{name}.log").read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            text = ["(no log)"]
        return f"{name} (pid {proc.pid}): " + " | ".join(text)

    def rq_worker(self) -> Proc:
        """Stock `rq worker` on both queues (the peers' jobs are rq's default pickle format)."""
        rq = str(Path(sys.executable).parent / "rq")
        return self.start(
            "worker", [rq, "worker", "-u", self.redis_url, self.second_queue, self.minute_queue]
        )


@dataclass(frozen=True)
class System:
    """A scheduler under comparison; `launch` starts it and returns its two replicas.

    `intent` makes the reader of the tick each push was meant for (intent.py, skew scenario);
    `skew_env` goes on top of libfaketime's variables for the skewed replica (see
    APSCHEDULER_SKEW_ENV). `prepare` runs before the system's window (an install), outside the
    measured start-up.
    """

    key: str
    label: str
    launch: Callable[[Stage], list[Proc]]
    intent: Callable[[], Intent]
    prepare: Callable[[], object] | None = None
    skew_env: dict[str, str] = field(default_factory=dict)


def launch_cronwork(stage: Stage) -> list[Proc]:
    """`python -m scheduler_boot` twice on one schedule file, `python -m jobs.worker`."""
    schedule = CRONWORK_SCHEDULE.format(second=stage.second_queue, minute=stage.minute_queue)
    env = process_env(stage.redis_url, stage.folder, schedule)
    replicas = [stage.start(f"replica-{n}", python("-m", "scheduler_boot"), env) for n in "ab"]
    stage.start("worker", python("-m", "jobs.worker", stage.second_queue, stage.minute_queue), env)
    return replicas


def launch_rq_scheduler(stage: Stage) -> list[Proc]:
    """Stock rq-scheduler: `interval=1` and `cron("* * * * *")` jobs, `rqscheduler -i 1` twice."""
    scheduler = Scheduler(connection=Redis.from_url(stage.redis_url))
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    scheduler.schedule(first, NOOP, interval=1, queue_name=stage.second_queue)
    with warnings.catch_warnings():  # the crontab library's notice about its own next version
        warnings.simplefilter("ignore", FutureWarning)
        scheduler.cron("* * * * *", NOOP, queue_name=stage.minute_queue)
    rqscheduler = str(Path(sys.executable).parent / "rqscheduler")
    replicas = [stage.start(f"replica-{n}", [rqscheduler, "-u", stage.redis_url, "-i", "1"]) for n in "ab"]
    stage.rq_worker()
    return replicas


def launch_rq_cron(stage: Stage) -> list[Proc]:
    """RQ 3.0's `rq cron CONFIG` twice, each with the same two cron jobs."""
    config = stage.folder / "cron_config.py"
    config.write_text(RQ_CRON_CONFIG.format(second=stage.second_queue, minute=stage.minute_queue))
    rq = str(Path(sys.executable).parent / "rq")
    replicas = [stage.start(f"replica-{n}", [rq, "cron", str(config), "-u", stage.redis_url]) for n in "ab"]
    stage.rq_worker()
    return replicas


def launch_apscheduler(stage: Stage) -> list[Proc]:
    """APScheduler 3 (`.bench-venv/`) twice on one RedisJobStore; see bench/peer_jobs.py."""
    interpreter = str(bench_python())
    args = [interpreter, "-m", "bench.peer_jobs", stage.redis_url, stage.second_queue, stage.minute_queue]
    replicas = [stage.start(f"replica-{n}", args) for n in "ab"]
    stage.rq_worker()
    return replicas


# libfaketime 0.9.10 (Debian 12) reports CLOCK_MONOTONIC shifted like the wall clock but does
# not wrap sem_clockwait, which Python 3.11 uses for a lock or Event wait with a timeout: the
# deadline is on the faked clock, the wait on the real one, so `Event.wait(0.5)` never returns.
# APScheduler's BlockingScheduler sleeps in `Event.wait`: its skewed replica would hang at start
# and push nothing, an artefact of the tool, not of a fast host clock. Its replica keeps the
# real monotonic clock instead (what a host whose wall clock is off has anyway). Not for the
# others: with it, libfaketime's clock_nanosleep fails `time.sleep` with EINVAL.
APSCHEDULER_SKEW_ENV = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}

SYSTEMS = (
    System("cronwork", "Cronwork", launch_cronwork, lambda: JobIdTick(CRONWORK_ID, "job id")),
    System("rqscheduler", "rq-scheduler 0.14 -i 1", launch_rq_scheduler, ZsetScoreTick),
    System("rqcron", "RQ 3.0 rq cron", launch_rq_cron, CronHashTick),
    System(
        "apscheduler",
        "APScheduler 3 RedisJobStore",
        launch_apscheduler,
        lambda: JobIdTick(APSCHEDULER_ID, "job id (run time from its executor's log record)"),
        prepare=bench_python,
        skew_env=APSCHEDULER_SKEW_ENV,
    ),
)
