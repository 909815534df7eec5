"""The schedulers and workers under test: start, SIGKILL and restart, and stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from app.config import PROJECT_ROOT
from bench import faketime
from bench.chaos.inflight import Kill, runs_held_by
from bench.chaos.processes import alive, descendants, reap_orphans, send_signal
from bench.chaos.schedule import QUEUE
from bench.harness import python

SCHEDULERS = 2
# This scheduler's host clock runs fast (rule 11): it must still never push a tick early.
SKEWED_SLOT, SKEW = 2, "+1.5s"
WORKERS = 3
STOP_TIMEOUT = 15.0
# A worker SIGKILLed alone must take its work horse and rq scheduler child with it (their
# parent-death signal): a horse that outlives its worker runs on while the run is declared
# abandoned and retried (docs/design.md, "Known pitfalls of the libraries"). Seconds they get to be gone.
ORPHAN_GRACE = 5.0


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
        env = self.env
        if role == "scheduler":
            args = python("-m", "scheduler_boot")
            if slot == SKEWED_SLOT and faketime.library() is not None:
                env = {**env, **faketime.skewed_env(SKEW)}
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
                env=env,
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
        reap_orphans({m.proc.pid for m in self.history})

    def all_ready(self) -> bool:
        return all(m.ready is not None for m in self.current.values())

    def kill(self, member: Member, conn: Redis, parent_only: bool = False) -> Kill:
        """SIGKILL one process (a worker with all its children, or with `parent_only` its main
        pid alone) and start its replacement."""
        record = Kill(at=0.0, member=member.label, role=member.role, parent_only=parent_only)
        pid = member.proc.pid
        member.killed, member.fate = True, "SIGKILLed by the harness" + (" (alone)" if parent_only else "")
        children: list[int] = []
        if member.role == "worker":
            # Freeze the worker and its children first: no job can end and no horse can be
            # forked while the harness reads which runs the worker holds.
            send_signal(pid, signal.SIGSTOP)
            children = descendants(pid)
            for child in children:
                send_signal(child, signal.SIGSTOP)
            children = sorted(set(children) | set(descendants(pid)))
            try:
                record.targets = runs_held_by(conn, member.name, 0.0, "kill")
            finally:
                if not parent_only:
                    for child in children:
                        send_signal(child, signal.SIGKILL)
            record.children = len(children)
        send_signal(pid, signal.SIGKILL)
        member.proc.wait()
        record.at = member.ended = time.time()
        if parent_only:
            self._await_orphans(record, children)
        for target in record.targets:
            target.killed_at = record.at
        self.spawn(member.role, member.slot)
        return record

    def _await_orphans(self, record: Kill, children: list[int]) -> None:
        """After a parent-only kill: thaw the children (a stopped process acts on its parent-death
        signal only once continued), give them ORPHAN_GRACE to die, SIGKILL any survivor."""
        for child in children:
            send_signal(child, signal.SIGCONT)
        deadline = time.monotonic() + ORPHAN_GRACE
        while (left := [c for c in children if alive(c)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        record.orphans_gone = time.time() - record.at
        record.survivors = left
        for child in left:
            send_signal(child, signal.SIGKILL)
        reap_orphans({m.proc.pid for m in self.history})

    def stop(self, role: str) -> None:
        """SIGTERM every current process of `role`; SIGKILL what is left after STOP_TIMEOUT."""
        members = [m for m in self.current.values() if m.role == role and m.proc.poll() is None]
        children = {m.proc.pid: descendants(m.proc.pid) for m in members}
        for member in members:
            member.killed, member.fate = True, "stopped (SIGTERM) at the end"
            send_signal(member.proc.pid, signal.SIGTERM)
        for member in members:
            try:
                member.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                send_signal(member.proc.pid, signal.SIGKILL)
                member.proc.wait()
            member.ended = time.time()
            for child in children[member.proc.pid]:
                send_signal(child, signal.SIGKILL)

    def kill_everything(self, spare: int | None) -> None:
        """Last-resort cleanup (Ctrl-C, error): SIGKILL every process below the harness but
        `spare` (Redis), orphaned work horses included (the harness is their subreaper)."""
        for member in self.history:
            member.killed = True
        redis = {spare, *descendants(spare)} if spare else set()
        for pid in descendants(os.getpid()):
            if pid not in redis:
                send_signal(pid, signal.SIGKILL)
        for member in self.history:
            member.proc.wait()
        reap_orphans({m.proc.pid for m in self.history})
