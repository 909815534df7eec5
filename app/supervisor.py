"""The process supervisor of `make run`: honcho's Manager with a stop an operator can trust.

honcho 2.0 stops a Procfile by sending SIGTERM to every process group at once and SIGKILL to
whatever is left 5 s later (`honcho.manager.KILL_WAIT`, not an option of `honcho start`), then
prints "sending SIGKILL" on every 0.1 s turn of its loop until the last process is gone
(issue 12 counted 71 such lines). A worker running a job was killed inside the 60 s grace
its README promises. Here:

- the grace before SIGKILL is the worker's own shutdown grace plus a margin, so a running job
  finishes or is stopped by its worker, which then deregisters;
- a second Ctrl-C (or SIGTERM) stops everything at once, as most service managers do;
- the SIGKILL round is sent and printed once.

The backing Redis is not one of these processes: `app.devrun` starts it before and stops it
after, so it is always the last to go.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import honcho.manager
from honcho.environ import parse_procfile
from honcho.manager import Manager

# Seconds between the first SIGTERM and SIGKILL: the worker's shutdown grace (60 s,
# jobs.worker.defaults.SHUTDOWN_GRACE; a test keeps this above it), then time to deregister.
STOP_GRACE = 70.0
# Seconds between a second signal and SIGKILL for whatever still runs.
SECOND_SIGNAL_WAIT = 5.0


class Supervisor(Manager):
    """Runs the processes of a Procfile; see the module docstring for how it stops them."""

    def __init__(self, grace: float = STOP_GRACE) -> None:
        super().__init__()
        self.grace = grace
        self._stop_started = 0.0
        self._killed = False
        self._pending_force: bool | None = None  # a signal came before every pid was known

    @classmethod
    def from_procfile(cls, text: str, env: dict[str, str], cwd: str) -> Supervisor:
        """One process per Procfile line, each with `env`, started in `cwd`."""
        supervisor = cls()
        for name, command in parse_procfile(text).processes.items():
            supervisor.add_process(f"{name}.1", command, env=env, cwd=cwd)
        return supervisor

    def loop(self) -> None:
        # The module constant is honcho's only knob for the wait before SIGKILL.
        honcho.manager.KILL_WAIT = self.grace
        super().loop()

    def _start(self) -> None:
        # honcho's loop installs its SIGINT/SIGTERM handler just before starting the processes;
        # wrap it so that a signal during the stop means "now" (tests/test_devrun.py pins it).
        first = signal.getsignal(signal.SIGINT)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._terminating:
                self._stop_now()
            elif callable(first):
                first(signum, frame)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        super()._start()

    def terminate(self) -> None:
        """SIGTERM to every process, once: web and scheduler stop at once, a worker lets its
        running job finish within its grace."""
        if not self._terminating:
            self._stop_started = time.monotonic()
            self._system_print(f"stopping every process, up to {self.grace:.0f}s (Ctrl-C again: now)\n")
        super().terminate()

    def _stop_now(self) -> None:
        """A second signal: SIGTERM again (an rq worker then stops its job at once and still
        deregisters), and SIGKILL for whatever is left a few seconds later."""
        self._system_print("stopping now\n")
        self._killall()
        # honcho counts its wait from the first process's exit, about when the stop began.
        honcho.manager.KILL_WAIT = time.monotonic() - self._stop_started + SECOND_SIGNAL_WAIT

    def _killall(self, force: bool = False) -> None:
        # honcho learns a pid from the child's "started" event; a signal before every event
        # arrived made its _killall raise KeyError('pid'). Send it once every pid is known.
        if not super()._all_started():
            self._pending_force = force or bool(self._pending_force)
            return
        super()._killall(force)

    def _all_started(self) -> bool:
        started = bool(super()._all_started())
        if started and self._pending_force is not None:
            force, self._pending_force = self._pending_force, None
            super()._killall(force)
        return started

    def kill(self) -> None:
        """SIGKILL whatever is left, once."""
        if self._killed:
            return
        self._killed = True
        super().kill()

    def _system_print(self, data: str) -> None:
        super()._system_print(data)
        sys.stdout.flush()


@contextmanager
def foreground_group() -> Iterator[None]:
    """While running interactively under `make run`, own the terminal's foreground group.

    Ctrl-C signals the whole foreground process group: make too, which then prints
    `make: *** [run] Interrupt` (or `Error 130`) however cleanly everything stopped. In its
    own group, given the terminal (what a shell does for a job), Ctrl-C reaches this process
    and its helpers only; the terminal is handed back on the way out. Without a terminal
    (CI, tests, a pipe) nothing changes.
    """
    try:
        fd = sys.stdin.fileno()
        owned = os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp() and os.getpid() != os.getsid(0)
    except (OSError, ValueError):
        owned = False
    if not owned:
        yield
        return
    previous = os.getpgrp()
    # Writing to the terminal's settings from a background group raises SIGTTOU: ignore it.
    handler = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
        yield
    finally:
        try:
            os.tcsetpgrp(fd, previous)
        except OSError:
            pass  # the old group is gone (make was killed): the shell takes the terminal back
        signal.signal(signal.SIGTTOU, handler)
