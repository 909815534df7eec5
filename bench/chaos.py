"""Chaos harness (issue 7): SIGKILL schedulers and workers, restart Redis, then audit every tick.

    python -m bench.chaos [--seconds N] [--seed S] [--keep]
    python -m bench chaos                  (CHAOS_SECONDS, default 300)

Loopback only: its own redis-server (AOF) on a free 127.0.0.1 port, a SQLite file made by
`flask db upgrade`, 2 schedulers and 3 workers, all in a temporary folder removed at the end
(also on Ctrl-C or SIGTERM); after a violation, or with `--keep`, the folder (logs, AOF) is
kept and its path printed.

Phases: warm-up (every process up, first runs done) → chaos for N seconds: every 3–6 s one
random scheduler or worker is SIGKILLed (a worker together with its work horse and its rq
scheduler child, found in /proc) and restarted at once; Redis is stopped cleanly and started
again on the same port once, mid-way → drain: kills stop, the schedulers keep going until every
template is past the end of the window, then stop → settle: the workers finish the queue and
find abandoned runs (heartbeat TTL + maintenance, SETTLE_MAX at most) → audit.

Rules, for every tick t of every schedule with chaos start ≤ t ≤ chaos end (see `Auditor`):
 1. the ledger has a record, naming the run's job, and its state is final: succeeded, failed,
    timed_out, abandoned, skipped_overlap or missed (never running, enqueued, retrying, paused);
 2. the state is one the schedule can reach (EXPECTED): a sleep never fails, `fail` never
    succeeds, the 1 s timeout always times out. Excused (counted, not violations): `failed`
    for a run in flight while Redis was down (its result could not be written). A run a killed
    worker dequeued but never started is requeued (60–120 s later) and must end like any other;
 3. attempts (oldest first): all but the last are `retrying`, the last one's state is the
    record's, at most retries + 1 of them, exactly retries + 1 when the run ended failed,
    timed_out or abandoned; none for missed; only `retrying` ones for skipped_overlap;
 4. every AbandonedJobError attempt is a run the harness killed (same job, same start) or one
    in flight while Redis was down (excused); every run the harness killed mid-job (a job in
    the StartedJobRegistry under the killed worker's name, read while the worker and its
    children were SIGSTOPped) has such an attempt and then a retry or a final state. A kill
    the ledger dates after the job's end raced it and is only counted;
 5. record_run lists: quick_once and quick_skip (no retries) hold each tick at most once in
    the whole list, exactly once when succeeded, never when skipped or missed; quick_retry
    holds a tick at most once per attempt, at least once when succeeded;
 6. `missed` only for a tick that fell in an outage (Redis down, or no started scheduler
    alive; from MISS_SLACK s before it to its end) and was handled more than 10 s late
    (misfire.ON_TIME_TOLERANCE): what the misfire policy prescribes, nothing else;
 7. at the end nothing is stuck: the queue, its intermediate list, the StartedJobRegistry
    and the ScheduledJobRegistry are empty, no overlap lock is held, and no rq maintenance
    lock was left behind by a killed worker;
 8. no process exits unless the harness stopped it (a crashed one is restarted, like a
    supervisor would, and the runs it held are followed like killed ones).
Any violation is printed with its evidence and the exit status is 1.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from app.config import PROJECT_ROOT
from app.embedded_redis import EmbeddedRedis, free_port
from bench.harness import process_env, python
from jobs.runtime import HARD_KILL_GRACE
from scheduler_boot.keys import RQ_SCHEDULER_SET, Keys
from scheduler_boot.ledger import Ledger
from scheduler_boot.misfire import ON_TIME_TOLERANCE
from scheduler_boot.spec import Schedule, load_schedule

DEFAULT_SECONDS = 300
SCHEDULERS = 2
WORKERS = 3
QUEUE = "default"
KILL_EVERY = (3.0, 6.0)  # seconds between two kills, uniform
REDIS_DOWN = 2.0  # seconds Redis stays stopped during its restart
WARMUP_MAX = 90.0
DRAIN_MAX = 30.0  # for the schedulers to handle every tick up to the end of chaos
# Abandoned detection is heartbeat TTL (≤ 30 s) + maintenance (15 s); a retry then waits for
# rq's own scheduler, whose lock (61 s TTL) may have died with a killed worker: 120 s covers
# both, and the settle ends as soon as everything is final.
SETTLE_MAX = 120.0
STOP_TIMEOUT = 15.0
MISS_SLACK = 2.0  # s before an outage a tick may already be unhandled (one pass + margin)
RACE_SLACK = 0.5  # s: a job the ledger says ended this close to a kill raced it
RAN_KEY = "chaos:ran:{}"
REQUEUED_NEVER_STARTED = "its worker died before starting it"  # jobs.worker's log line
ABANDONED = "AbandonedJobError"
FINAL = frozenset({"succeeded", "failed", "timed_out", "abandoned", "skipped_overlap", "missed"})
KEYS = Keys("cronwork")
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h

SCHEDULE = """\
[defaults]
timezone = "UTC"
queue = "default"
retry_backoff = ["1s"]
misfire = "run_latest"
misfire_grace = "10m"

[schedules.quick_once]     # exactly-once proof: never fails, never retried
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_once" }
every = "2s"
overlap = "allow"
timeout = "10s"

[schedules.quick_skip]
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_skip" }
every = "3s"
overlap = "skip"
timeout = "3s"

[schedules.quick_retry]    # a killed run is retried and legitimately runs again
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_retry" }
every = "4s"
overlap = "allow"
timeout = "10s"
retries = 2

[schedules.sleep_allow]
func = "jobs.diagnostics.sleep"
kwargs = { seconds = 3.0 }
every = "4s"
overlap = "allow"
timeout = "15s"
retries = 1

[schedules.sleep_skip]
func = "jobs.diagnostics.sleep"
kwargs = { seconds = 2.0 }
every = "4s"
overlap = "skip"
timeout = "4s"

[schedules.flaky]
func = "jobs.diagnostics.fail"
kwargs = { message = "chaos: deliberate failure" }
every = "5s"
overlap = "allow"
timeout = "10s"
retries = 2

[schedules.times_out]
func = "jobs.diagnostics.sleep"
kwargs = { seconds = 5.0 }
every = "6s"
overlap = "allow"
timeout = "1s"
"""
# Final states each schedule can reach (plus `missed`, under rule 6).
EXPECTED = {
    "quick_once": {"succeeded", "abandoned"},
    "quick_skip": {"succeeded", "skipped_overlap", "abandoned"},
    "quick_retry": {"succeeded", "abandoned"},
    "sleep_allow": {"succeeded", "abandoned"},
    "sleep_skip": {"succeeded", "skipped_overlap", "abandoned"},
    "flaky": {"failed", "abandoned"},
    "times_out": {"timed_out", "abandoned"},
}
EXACTLY_ONCE = ("quick_once", "quick_skip")
ONCE_PER_ATTEMPT = ("quick_retry",)
STATES = ("succeeded", "failed", "timed_out", "abandoned", "skipped_overlap", "missed", "other")


class Interrupted(Exception):
    """SIGTERM (or SIGINT) asked the harness to stop."""


# -- processes ------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    """ppid → child pids of every process, from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (work horses, rq's scheduler child)."""
    children = _children_map()
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


@dataclass
class Member:
    """One incarnation of a scheduler or worker process."""

    role: str
    slot: int
    generation: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    name: str = ""
    ready: float | None = None
    ended: float | None = None
    killed: bool = False  # the harness ended it (SIGKILL or stop): its exit is expected
    fate: str = "running"

    @property
    def label(self) -> str:
        return f"{self.role}-{self.slot}.{self.generation}"

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Target:
    """A run in flight on a worker when the harness killed it (or when it exited by itself)."""

    job_id: str
    schedule: str
    tick: int
    started_at: datetime | None
    killed_at: float
    cause: str = "kill"


@dataclass
class Kill:
    """A SIGKILL by the harness, or (cause "crash") a process that exited by itself."""

    at: float
    member: str
    role: str
    children: int = 0
    targets: list[Target] = field(default_factory=list)
    cause: str = "kill"


class Cluster:
    """The schedulers and workers: start, SIGKILL and restart, and stop them."""

    def __init__(self, env: dict[str, str], logs: Path, conn: Redis) -> None:
        self.env = env
        self.logs = logs
        self.conn = conn
        self.current: dict[tuple[str, int], Member] = {}
        self.history: list[Member] = []
        self.unexpected: list[Member] = []
        self.crashes: list[Kill] = []
        self._unresolved: list[tuple[Member, Kill]] = []

    def spawn(self, role: str, slot: int) -> Member:
        generation = sum(1 for m in self.history if (m.role, m.slot) == (role, slot)) + 1
        label = f"{role}-{slot}.{generation}"
        if role == "scheduler":
            args = python("-m", "scheduler_boot")
        else:
            # A fresh name per incarnation: rq refuses to start a worker whose name is still
            # registered, and a SIGKILLed worker's registration lives worker_ttl + 60 s.
            args = python("-m", "jobs.worker", QUEUE, "--name", f"chaos-w{slot}-{generation}")
            args += ["--shutdown-grace", "5"]
        log = self.logs / f"{label}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        member = Member(role, slot, generation, proc, log, time.time())
        if role == "worker":
            member.name = f"chaos-w{slot}-{generation}"
        self.current[(role, slot)] = member
        self.history.append(member)
        return member

    def start_all(self) -> None:
        for slot in range(1, SCHEDULERS + 1):
            self.spawn("scheduler", slot)
        for slot in range(1, WORKERS + 1):
            self.spawn("worker", slot)

    def poll(self) -> None:
        """Note start-up completions; restart (and record) a process that exited by itself."""
        for member in list(self.current.values()):
            if member.ready is None:
                text = member.output()
                if member.role == "scheduler" and " started, " in text:
                    member.ready = time.time()
                    member.name = text.split("scheduler name=", 1)[1].split()[0]
                elif member.role == "worker" and f"worker name={member.name}" in text:
                    member.ready = time.time()
            if member.proc.poll() is not None and not member.killed:
                member.ended, member.fate = time.time(), f"exited by itself ({member.proc.returncode})"
                self.unexpected.append(member)
                crash = Kill(at=member.ended, member=member.label, role=member.role, cause="crash")
                self.crashes.append(crash)
                if member.role == "worker":
                    self._unresolved.append((member, crash))
                self.spawn(member.role, member.slot)
        for member, crash in list(self._unresolved):
            # Which runs the crashed worker held; Redis may be down right now (that may be
            # why it crashed): the StartedJobRegistry keeps them until abandoned detection.
            try:
                crash.targets = runs_held_by(self.conn, member.name, crash.at, "crash")
            except RedisError:
                continue
            self._unresolved.remove((member, crash))
        _reap_orphans({m.proc.pid for m in self.history})

    def all_ready(self) -> bool:
        return all(m.ready is not None for m in self.current.values())

    def kill(self, member: Member, conn: Redis) -> Kill:
        """SIGKILL one process (a worker with all its children) and start its replacement."""
        record = Kill(at=0.0, member=member.label, role=member.role)
        pid = member.proc.pid
        member.killed, member.fate = True, "SIGKILLed by the harness"
        if member.role == "worker":
            # Freeze the worker and its children first: no job can end and no horse can be
            # forked while the harness reads which runs the worker holds.
            _signal(pid, signal.SIGSTOP)
            children = descendants(pid)
            for child in children:
                _signal(child, signal.SIGSTOP)
            children = sorted(set(children) | set(descendants(pid)))
            try:
                record.targets = runs_held_by(conn, member.name, 0.0, "kill")
            finally:
                for child in children:
                    _signal(child, signal.SIGKILL)
            record.children = len(children)
        _signal(pid, signal.SIGKILL)
        member.proc.wait()
        record.at = member.ended = time.time()
        for target in record.targets:
            target.killed_at = record.at
        self.spawn(member.role, member.slot)
        return record

    def stop(self, role: str) -> None:
        """SIGTERM every current process of `role`; SIGKILL what is left after STOP_TIMEOUT."""
        members = [m for m in self.current.values() if m.role == role and m.proc.poll() is None]
        children = {m.proc.pid: descendants(m.proc.pid) for m in members}
        for member in members:
            member.killed, member.fate = True, "stopped (SIGTERM) at the end"
            _signal(member.proc.pid, signal.SIGTERM)
        for member in members:
            try:
                member.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal(member.proc.pid, signal.SIGKILL)
                member.proc.wait()
            member.ended = time.time()
            for child in children[member.proc.pid]:
                _signal(child, signal.SIGKILL)

    def kill_everything(self, spare: int | None) -> None:
        """Last-resort cleanup (Ctrl-C, error): SIGKILL every process below the harness but
        `spare` (Redis), orphaned work horses included (the harness is their subreaper)."""
        for member in self.history:
            member.killed = True
        redis = {spare, *descendants(spare)} if spare else set()
        for pid in descendants(os.getpid()):
            if pid not in redis:
                _signal(pid, signal.SIGKILL)
        for member in self.history:
            member.proc.wait()
        _reap_orphans({m.proc.pid for m in self.history})


def become_subreaper() -> None:
    """Adopt orphans: a horse whose worker crashed stays findable, and killable, below us."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _reap_orphans(known: set[int]) -> None:
    """Collect adopted orphans that exited (Popen reaps the processes it started itself)."""
    for pid in _children_map().get(os.getpid(), []):
        if pid not in known:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=UTC)


def runs_held_by(conn: Redis, worker_name: str, at: float, cause: str) -> list[Target]:
    """Cronwork runs `worker_name` is executing: `started` in the StartedJobRegistry under its
    name, or `running` on it in the ledger (rq may have committed an end the ledger lacks)."""
    ledger = Ledger(conn, KEYS)
    running = {
        KEYS.run_id(name, r["tick"])
        for name in EXPECTED
        for r in ledger.history(name, 10)
        if r.get("state") == "running" and r.get("worker") == worker_name
    }
    # cleanup=False: a cleanup would handle abandoned jobs itself, without Cronwork's handlers.
    started = set(StartedJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False))
    targets = []
    for job_id in sorted(running | started):
        name, status, began = conn.hmget(f"rq:job:{job_id}", "worker_name", "status", "started_at")
        if name is None or name.decode() != worker_name:
            continue
        if job_id in running or status == b"started":
            schedule, tick = _split_run_id(job_id)
            # rq's started_at, as the abandoned attempt will record it (the horse's differs).
            targets.append(
                Target(job_id, schedule, tick, _parse_time(began.decode() if began else None), at, cause)
            )
    return targets


def _split_run_id(job_id: str) -> tuple[str, int]:
    head, _, tick = job_id.rpartition("-")
    return head.removeprefix(f"{KEYS.prefix}-"), int(tick)


# -- the run --------------------------------------------------------------------------------


@dataclass
class Timeline:
    """When things happened (epoch seconds)."""

    chaos_start: float = 0.0
    chaos_end: float = 0.0
    redis_down: float = 0.0
    redis_up: float = 0.0
    settle: float = 0.0
    settled: bool = False


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM raises Interrupted (Ctrl-C already raises KeyboardInterrupt): cleanup runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Options:
    seconds: float = DEFAULT_SECONDS
    seed: int = 0
    keep: bool = False
    redis_restart: bool = True


def chaos(options: Options) -> int:
    """Run the whole harness; returns the number of violations."""
    become_subreaper()
    folder = Path(tempfile.mkdtemp(prefix="cronwork-chaos-"))
    server = EmbeddedRedis(folder / "redis", port=free_port(), persist=True)
    cluster: Cluster | None = None
    violations = 0
    try:
        with _interruptible():
            server.start()
            env = process_env(server.url, folder, SCHEDULE)
            for key in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
                env.pop(key, None)
            env.update(CRONWORK_PREFIX=KEYS.prefix, STARTUP_TIMEOUT="30")
            logs = folder / "logs"
            logs.mkdir()
            migrate = subprocess.run(
                python("-m", "flask", "--app", "app", "db", "upgrade"),
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                timeout=120,
            )
            if migrate.returncode != 0:
                raise RuntimeError(f"db upgrade failed:\n{migrate.stdout.decode()}{migrate.stderr.decode()}")
            schedule = load_schedule(folder / "schedule.toml")
            conn = Redis.from_url(server.url, socket_timeout=10)
            cluster = Cluster(env, logs, conn)
            timeline = Timeline()
            print(f"chaos: {options.seconds:.0f}s, seed {options.seed}, folder {folder}", flush=True)
            kills = _run_chaos(cluster, conn, server, options, timeline)
            _drain(cluster, conn, schedule, timeline)
            _settle(cluster, conn, schedule, timeline)
            cluster.stop("worker")
            result = audit(conn, schedule, cluster, kills, timeline)
            print_report(result, cluster, kills, timeline, options)
            conn.close()
            violations = len(result.violations)
            return violations
    finally:
        if cluster is not None:
            cluster.kill_everything(spare=server.process.pid if server.process else None)
        server.stop()
        if options.keep or violations:
            print(f"kept for inspection (logs/, redis/ with the AOF): {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _wait(cluster: Cluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cluster.poll()
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))


def _run_chaos(
    cluster: Cluster,
    conn: Redis,
    server: EmbeddedRedis,
    options: Options,
    timeline: Timeline,
) -> list[Kill]:
    rng, seconds = random.Random(options.seed), options.seconds
    cluster.start_all()
    deadline = time.monotonic() + WARMUP_MAX
    ledger = Ledger(conn, KEYS)
    while not (
        cluster.all_ready() and any(r["state"] == "succeeded" for r in ledger.history("quick_once", 5))
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up: not everything was up after {WARMUP_MAX:.0f}s (see the logs)")
        _wait(cluster, 0.5)
    timeline.chaos_start = time.time()
    timeline.chaos_end = timeline.chaos_start + seconds
    redis_at = timeline.chaos_start + seconds * rng.uniform(0.35, 0.65)
    kills: list[Kill] = []
    next_kill = timeline.chaos_start + rng.uniform(*KILL_EVERY)
    while (now := time.time()) < timeline.chaos_end:
        if options.redis_restart and not timeline.redis_down and now >= redis_at:
            timeline.redis_down = time.time()
            server.stop()  # SIGTERM: redis-server flushes its AOF and exits cleanly
            _wait(cluster, REDIS_DOWN)
            server.start()
            timeline.redis_up = time.time()
        elif now >= next_kill:
            victim = rng.choice(sorted(cluster.current.values(), key=lambda m: m.label))
            kills.append(cluster.kill(victim, conn))
            next_kill = time.time() + rng.uniform(*KILL_EVERY)
        _wait(cluster, 0.2)
    return kills


def _drain(cluster: Cluster, conn: Redis, schedule: Schedule, timeline: Timeline) -> None:
    """Keep the schedulers until every tick up to the end of chaos is handled, then stop them."""
    deadline = time.monotonic() + DRAIN_MAX
    templates = [KEYS.template_id(name) for name in schedule.enabled]
    while time.monotonic() < deadline:
        scores = [conn.zscore(RQ_SCHEDULER_SET, t) for t in templates]
        if all(s is not None and s > timeline.chaos_end for s in scores):
            break
        _wait(cluster, 0.5)
    cluster.stop("scheduler")


def _settle(cluster: Cluster, conn: Redis, schedule: Schedule, timeline: Timeline) -> None:
    """Let the workers finish everything and find abandoned runs; bounded by SETTLE_MAX."""
    start = time.monotonic()
    while time.monotonic() - start < SETTLE_MAX:
        if not pending(conn, schedule, timeline):
            timeline.settled = True
            break
        _wait(cluster, 2.0)
    timeline.settle = time.monotonic() - start


def leftovers(conn: Redis) -> dict[str, list[str]]:
    """What is still queued, started, scheduled for retry or locked (rule 7)."""
    queue = Queue(QUEUE, connection=conn)
    return {
        "queued": queue.get_job_ids(),
        "intermediate": [i.decode() for i in conn.lrange(queue.intermediate_queue_key, 0, -1)],
        "started": StartedJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False),
        "scheduled": ScheduledJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False),
        "overlap_locks": [k.decode() for k in conn.scan_iter(match=KEYS.overlap_lock("*"))],
    }


def window_ticks(schedule: Schedule, timeline: Timeline) -> dict[str, list[int]]:
    """Every tick of every schedule from the start to the end of chaos."""
    out: dict[str, list[int]] = {}
    start = datetime.fromtimestamp(timeline.chaos_start - 0.001, UTC)
    for name, spec in schedule.enabled.items():
        ticks: list[int] = []
        tick = spec.next_fire(start)
        while tick is not None and tick.timestamp() <= timeline.chaos_end:
            ticks.append(int(tick.timestamp()))
            tick = spec.next_fire(tick)
        out[name] = ticks
    return out


def pending(conn: Redis, schedule: Schedule, timeline: Timeline) -> bool:
    """Whether anything in the window is not final yet, or anything is queued or started."""
    try:
        if any(leftovers(conn).values()):
            return True
        ledger = Ledger(conn, KEYS)
        for name, ticks in window_ticks(schedule, timeline).items():
            states = {r["tick"]: r.get("state") for r in ledger.history(name, 500)}
            if any(states.get(t) not in FINAL for t in ticks):
                return True
    except RedisError:
        return True
    return False


# -- the audit ------------------------------------------------------------------------------


@dataclass
class Result:
    """What the audit found: figures and violations."""

    violations: list[str] = field(default_factory=list)
    states: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    retried: Counter[str] = field(default_factory=Counter)
    ran: dict[str, int] = field(default_factory=dict)
    lost: Counter[str] = field(default_factory=Counter)  # runs in flight on killed/crashed workers
    lags: list[float] = field(default_factory=list)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    outages: list[tuple[float, float]] = field(default_factory=list)


def _epoch(text: str | None) -> float | None:
    moment = _parse_time(text)
    return moment.timestamp() if moment else None


def _same_start(attempt: dict[str, Any], target: Target) -> bool:
    started = _parse_time(attempt.get("started_at"))
    if target.started_at is None or started is None:
        return True
    return abs((started - target.started_at).total_seconds()) < 0.001


def _covered(intervals: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The parts of [start, end] that no interval covers."""
    gaps, cursor = [], start
    for lo, hi in sorted(intervals):
        if lo > cursor:
            gaps.append((cursor, min(lo, end)))
        cursor = max(cursor, hi)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return [(lo, hi) for lo, hi in gaps if hi > lo]


def outages(cluster: Cluster, timeline: Timeline) -> list[tuple[float, float]]:
    """Intervals when no tick could be enqueued: Redis down, or no started scheduler alive."""
    alive = [
        (m.ready, m.ended if m.ended is not None else float("inf"))
        for m in cluster.history
        if m.role == "scheduler" and m.ready is not None
    ]
    found = _covered(alive, timeline.chaos_start, timeline.chaos_end)
    if timeline.redis_down:
        found.append((timeline.redis_down, timeline.redis_up))
    return sorted(found)


class Auditor:
    """Applies the rules of the module docstring to the ledger, the lists and the registries."""

    def __init__(
        self, conn: Redis, schedule: Schedule, cluster: Cluster, kills: list[Kill], timeline: Timeline
    ) -> None:
        self.conn = conn
        self.timeouts = {name: spec.timeout for name, spec in schedule.enabled.items()}
        self.ledger = Ledger(conn, KEYS)
        self.cluster = cluster
        self.targets = [t for k in [*kills, *cluster.crashes] for t in k.targets]
        self.timeline = timeline
        self.result = Result(outages=outages(cluster, timeline))

    def violation(self, text: str, job_id: str | None = None, name: str = "", tick: int = 0) -> None:
        lines = [text]
        if name:
            lines.append(f"    record:   {json.dumps(self._record(name, tick), sort_keys=True)}")
            for attempt in self.ledger.attempts(name, tick):
                lines.append(f"    attempt:  {json.dumps(attempt, sort_keys=True)}")
        if job_id:
            lines.append(f"    rq:       {self._rq_view(job_id)}")
            lines += [f"    log {line}" for line in self._log_lines(job_id)]
        self.result.violations.append("\n".join(lines))

    def _rq_view(self, job_id: str) -> str:
        """rq's side of a run: its status, registries and the fate of the worker that had it."""
        fields = ("status", "worker_name", "started_at", "ended_at")
        values = dict(zip(fields, self.conn.hmget(f"rq:job:{job_id}", *fields), strict=True))
        text = " ".join(f"{k}={v.decode() if v else '-'}" for k, v in values.items())
        registries = {
            "started": StartedJobRegistry(QUEUE, connection=self.conn),
            "failed": FailedJobRegistry(QUEUE, connection=self.conn),
            "finished": FinishedJobRegistry(QUEUE, connection=self.conn),
            "scheduled": ScheduledJobRegistry(QUEUE, connection=self.conn),
        }
        inside = [n for n, r in registries.items() if job_id in r.get_job_ids(cleanup=False)]
        text += f" registries={','.join(inside) or '-'}"
        worker = values["worker_name"].decode() if values["worker_name"] else ""
        for member in self.cluster.history:
            if worker and member.name == worker:
                ended = datetime.fromtimestamp(member.ended, UTC) if member.ended else None
                text += f"; {member.label} {member.fate}" + (f" at {ended:%H:%M:%S.%f}"[:-3] if ended else "")
        return text

    def _record(self, name: str, tick: int) -> dict[str, Any]:
        return next((r for r in self.ledger.history(name, 500) if r["tick"] == tick), {})

    def _log_lines(self, job_id: str, limit: int = 12) -> list[str]:
        found = []
        for member in self.cluster.history:
            found += [f"{member.label}: {line}" for line in member.output().splitlines() if job_id in line]
        return found[:limit]

    def schedule(self, name: str, retries: int, ticks: list[int]) -> None:
        records = {r["tick"]: r for r in self.ledger.history(name, 500)}
        ran: Counter[int] | None = None
        if name in EXACTLY_ONCE + ONCE_PER_ATTEMPT:
            values = [v.decode() for v in self.conn.lrange(RAN_KEY.format(name), 0, -1)]
            ran = Counter(int(_epoch(v) or 0) for v in values)
            self.result.ran[name] = sum(ran[t] for t in ticks)
            if name in EXACTLY_ONCE:
                for tick, count in sorted(ran.items()):
                    if count > 1:
                        self.violation(
                            f"{name} tick {tick}: ran {count} times (rule 5)", KEYS.run_id(name, tick)
                        )
        for tick in ticks:
            record = records.get(tick)
            if record is None:
                self.result.states[name]["other"] += 1
                self.violation(f"{name} tick {tick}: no ledger record (rule 1)")
                continue
            state = str(record.get("state"))
            self.result.states[name][state if state in STATES else "other"] += 1
            if isinstance(record.get("lag"), int | float):
                self.result.lags.append(float(record["lag"]))
            self.tick(name, retries, tick, record, ran)

    def tick(
        self, name: str, retries: int, tick: int, record: dict[str, Any], ran: Counter[int] | None
    ) -> None:
        state = str(record.get("state"))
        job_id = KEYS.run_id(name, tick)
        where = f"{name} tick {tick} ({datetime.fromtimestamp(tick, UTC):%H:%M:%S})"
        if state not in FINAL:
            self.violation(f"{where}: stuck in {state!r} (rule 1)", job_id, name, tick)
            return
        attempts = self.ledger.attempts(name, tick)
        if state == "missed":
            self.missed(where, tick, record, attempts, ran)
            return
        if state not in EXPECTED[name]:
            excuse = self.excuse(name, attempts[-1]) if attempts and state == "failed" else None
            if excuse:
                self.result.lost[excuse] += 1
            else:
                self.violation(
                    f"{where}: {state!r} is not an outcome this schedule can reach (rule 2)",
                    job_id,
                    name,
                    tick,
                )
        if record.get("job_id") != job_id:
            self.violation(f"{where}: record names job {record.get('job_id')!r} (rule 1)", job_id, name, tick)
        self.attempts(where, job_id, name, tick, retries, state, attempts)
        if ran is not None:
            self.ran(where, name, tick, state, len(attempts), ran[tick])

    def missed(
        self,
        where: str,
        tick: int,
        record: dict[str, Any],
        attempts: list[dict[str, Any]],
        ran: Counter[int] | None,
    ) -> None:
        handled = _epoch(record.get("missed_at"))
        late = handled is not None and handled - tick > ON_TIME_TOLERANCE
        in_outage = any(lo - MISS_SLACK <= tick <= hi for lo, hi in self.result.outages)
        if not (late and in_outage) or attempts or (ran is not None and ran[tick]):
            lateness = f"{handled - tick:.1f}s" if handled is not None else "?"
            self.violation(
                f"{where}: missed (handled {lateness} late) outside an outage or ran anyway"
                f" (rule 6; outages {[(round(lo), round(hi)) for lo, hi in self.result.outages]})",
                None,
                where.split()[0],
                tick,
            )

    def attempts(
        self,
        where: str,
        job_id: str,
        name: str,
        tick: int,
        retries: int,
        state: str,
        attempts: list[dict[str, Any]],
    ) -> None:
        states = [str(a.get("state")) for a in attempts]
        if len(attempts) > 1:
            self.result.retried[name] += 1
        problem = ""
        if state == "skipped_overlap":
            if any(s != "retrying" for s in states):
                problem = "a skipped run has non-retrying attempts"
        elif not attempts:
            problem = "no attempt recorded"
        elif any(s != "retrying" for s in states[:-1]) or states[-1] != state:
            problem = f"attempt states {states} do not end in {state!r} after retries"
        elif len(attempts) > retries + 1:
            problem = f"{len(attempts)} attempts for {retries} retries"
        elif state in ("failed", "timed_out", "abandoned") and len(attempts) != retries + 1:
            problem = f"final {state!r} after {len(attempts)} attempts of {retries + 1}"
        elif state == "abandoned" and attempts[-1].get("error_type") != ABANDONED:
            problem = "abandoned without an AbandonedJobError attempt"
        if problem:
            self.violation(f"{where}: {problem} (rule 3)", job_id, name, tick)
        for attempt in attempts:
            if attempt.get("error_type") != ABANDONED:
                continue
            if any(t.job_id == job_id and _same_start(attempt, t) for t in self.targets):
                continue
            if excuse := self.excuse(name, attempt):
                self.result.lost[excuse] += 1
            else:
                self.violation(
                    f"{where}: abandoned attempt of a run the harness did not kill (rule 4)",
                    job_id,
                    name,
                    tick,
                )

    def excuse(self, name: str, attempt: dict[str, Any]) -> str | None:
        """Why a run that cannot fail by itself failed or was abandoned, when that is legitimate
        (rule 2, rule 4): it was in flight while Redis restarted (its result could not be
        written)."""
        started, ended = _epoch(attempt.get("started_at")), _epoch(attempt.get("ended_at"))
        timeline = self.timeline
        if timeline.redis_down and started is not None and ended is not None:
            longest = self.timeouts[name] + HARD_KILL_GRACE
            if timeline.redis_down - longest <= started <= timeline.redis_up and ended >= timeline.redis_down:
                return "lost across the Redis restart"
        return None

    def requeued(self) -> None:
        """Count the runs a killed worker dequeued but never started; rq found them in its
        intermediate queue and our workers put them back (jobs.worker) instead of failing them."""
        self.result.lost["requeued, never started"] = sum(
            m.output().count(REQUEUED_NEVER_STARTED) for m in self.cluster.history if m.role == "worker"
        )

    def ran(self, where: str, name: str, tick: int, state: str, attempts: int, count: int) -> None:
        if name in EXACTLY_ONCE:
            wrong = (
                count > 1 or (state == "succeeded" and count != 1) or (state == "skipped_overlap" and count)
            )
        else:
            wrong = count > max(attempts, 1) or (state == "succeeded" and count < 1)
        if wrong:
            self.violation(
                f"{where}: {state} but ran {count} times in {attempts} attempts (rule 5)",
                KEYS.run_id(name, tick),
                name,
                tick,
            )

    def kills(self) -> None:
        """Rule 4, from the kills' side: every killed run was abandoned, then retried or final."""
        for target in self.targets:
            attempts = self.ledger.attempts(target.schedule, target.tick)
            record = self._record(target.schedule, target.tick)
            mine = [i for i, a in enumerate(attempts) if _same_start(a, target)]
            abandoned = [i for i in mine if attempts[i].get("error_type") == ABANDONED]
            ended = [_epoch(attempts[i].get("ended_at")) for i in mine] or [_epoch(record.get("ended_at"))]
            problem = ""
            if record.get("state") not in FINAL:
                problem = f"ends in {record.get('state')!r}"
            elif (
                abandoned
                and attempts[abandoned[0]].get("state") == "retrying"
                and abandoned[0] == len(attempts) - 1
            ):
                problem = "abandoned with a retry left, never retried"
            elif abandoned:
                self.result.lost[target.cause] += 1
                retried = attempts[abandoned[0]].get("state") == "retrying"
                self.result.lost[f"{target.cause} retried" if retried else f"{target.cause} final"] += 1
            elif target.cause == "crash":
                self.result.lost["crash finished by its orphaned horse"] += 1
            elif any(e is not None and e <= target.killed_at + RACE_SLACK for e in ended):
                self.result.lost["kill raced the end of the job"] += 1
            else:
                problem = "killed mid-job but never abandoned"
            if problem:
                self.violation(
                    f"{target.cause} of run {target.job_id}: {problem} (rule 4)",
                    target.job_id,
                    target.schedule,
                    target.tick,
                )

    def stuck(self) -> None:
        self.result.leftovers = leftovers(self.conn)
        for kind, ids in self.result.leftovers.items():
            if ids:
                self.violation(f"{kind} is not empty at the end (rule 7): {ids[:10]}")
        # rq's registry-cleaning lock lives 899 s: a worker killed while holding it stops every
        # worker's abandoned-job detection for 15 minutes (all workers are stopped by now).
        lock = Queue(QUEUE, connection=self.conn).registry_cleaning_key
        if (ttl := self.conn.ttl(lock)) > 0:
            self.violation(
                f"{lock} left by a killed worker, {ttl}s to live: no abandoned detection till then (rule 7)"
            )

    def processes(self) -> None:
        for member in self.cluster.unexpected:
            self.violation(
                f"{member.label} ({member.name}) exited by itself with {member.proc.returncode} (rule 8)\n"
                + "\n".join(f"    log {line}" for line in _crash_lines(member.output()))
            )


def _crash_lines(text: str, limit: int = 12) -> list[str]:
    """Why a process exited: its last error line, the project's and rq's frames, the exception."""
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if "unhandled exception" in line or " ERROR " in line]
    first = marks[-1] if marks else max(len(lines) - limit, 0)
    keep = [lines[first]]
    for line, code in zip(lines[first + 1 :], lines[first + 2 :], strict=False):
        if line.lstrip().startswith("File ") and any(
            p in line for p in ("/rq/", "/jobs/", "/scheduler_boot/")
        ):
            keep.append(f"{line.strip()}: {code.strip()}")
    last = next((line for line in reversed(lines) if line.strip()), "")
    tail = [line for line in lines[-4:] if line.strip() and line not in keep]
    return [line[:220] for line in keep[: limit - 1]] + [last[:220]] + ["... last lines:"] + tail


def audit(conn: Redis, schedule: Schedule, cluster: Cluster, kills: list[Kill], timeline: Timeline) -> Result:
    """Check every rule; returns the figures and the violations."""
    auditor = Auditor(conn, schedule, cluster, kills, timeline)
    if not timeline.settled:
        auditor.violation(f"not settled within {SETTLE_MAX:.0f}s: the checks below say what was left")
    for name, ticks in window_ticks(schedule, timeline).items():
        auditor.schedule(name, schedule.enabled[name].retries, ticks)
    auditor.kills()
    auditor.requeued()
    auditor.stuck()
    auditor.processes()
    return auditor.result


def print_report(
    result: Result, cluster: Cluster, kills: list[Kill], timeline: Timeline, options: Options
) -> None:
    """The figures table, then every violation with its evidence."""
    columns = ("ticks", *STATES[:-1], "other", "retried", "ran")
    widths = [max(len(c), 5) + 2 for c in columns]
    print(
        f"\n== chaos: {options.seconds:.0f}s, seed {options.seed}, {SCHEDULERS} schedulers, {WORKERS} workers,"
        f" window {datetime.fromtimestamp(timeline.chaos_start, UTC):%H:%M:%S}"
        f"–{datetime.fromtimestamp(timeline.chaos_end, UTC):%H:%M:%S} UTC"
    )
    print(f"{'schedule':<12}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    totals: Counter[str] = Counter()
    for name, states in result.states.items():
        row: dict[str, object] = {"ticks": sum(states.values()), **states, "retried": result.retried[name]}
        row["ran"] = result.ran.get(name, "-")
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
        print(
            f"{name:<12}" + "".join(f"{row.get(c, 0)!s:>{w}}" for c, w in zip(columns, widths, strict=True))
        )
    print(
        f"{'total':<12}" + "".join(f"{totals.get(c, 0):>{w}}" for c, w in zip(columns, widths, strict=True))
    )
    by_role = Counter(k.role for k in kills)
    children = sum(k.children for k in kills)
    print(
        f"kills: {by_role['scheduler']} scheduler, {by_role['worker']} worker (+{children} child processes:"
        f" work horses and rq scheduler children); runs killed mid-job {result.lost['kill']}"
        f" (abandoned then retried {result.lost['kill retried']}, abandoned final {result.lost['kill final']});"
        f" kills that raced a job's end {result.lost['kill raced the end of the job']}"
    )
    if cluster.crashes:
        print(
            f"crashes (processes that exited by themselves): {len(cluster.crashes)}; runs they held"
            f" {sum(len(c.targets) for c in cluster.crashes)} (abandoned {result.lost['crash']},"
            f" finished by their orphaned horse {result.lost['crash finished by its orphaned horse']})"
        )
    print(
        f"runs lost across the Redis restart: {result.lost['lost across the Redis restart']};"
        f" requeued after their worker died between dequeue and start: {result.lost['requeued, never started']}"
    )
    down = timeline.redis_up - timeline.redis_down if timeline.redis_down else 0.0
    print(f"redis restarts: {1 if timeline.redis_down else 0} (down {down:.1f}s, AOF)")
    gaps = [hi - lo for lo, hi in result.outages]
    print(f"outages (redis down or no scheduler up): {len(gaps)}, longest {max(gaps, default=0):.1f}s")
    if result.lags:
        lags = sorted(result.lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(
            f"enqueue lag: median {statistics.median(lags) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
            f" max {lags[-1] * 1000:.0f} ms"
        )
    print(
        f"unexpected exits: {len(cluster.unexpected)}; settle: {timeline.settle:.0f}s"
        f" ({'everything final' if timeline.settled else 'NOT SETTLED'})"
    )
    print(f"violations: {len(result.violations)}")
    for text in result.violations:
        print(f"  - {text}")
    sys.stdout.flush()


def run() -> None:
    """`python -m bench chaos`: CHAOS_SECONDS (default 300); exits 1 on any violation."""
    raise SystemExit(main(["--seconds", os.environ.get("CHAOS_SECONDS", str(DEFAULT_SECONDS))]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="chaos duration")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, AOF)")
    parser.add_argument(
        "--no-redis-restart", action="store_true", help="only kill processes (to tell faults apart)"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    try:
        violations = chaos(Options(args.seconds, seed, args.keep, not args.no_redis_restart))
    except (KeyboardInterrupt, Interrupted):
        print("chaos: interrupted, everything stopped and removed", file=sys.stderr)
        return 130
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
