"""`make run` as an operator lives it (issue 12): start, a second terminal, Ctrl-C, restart.

Real processes throughout: `python -m app.devrun` (what `make run` runs once installed) with
its own ports and instance directory, the bundled Redis, gunicorn, the scheduler and the workers
(default, and heavy for the CLIP job);
Ctrl-C is SIGINT to the whole process group, as a terminal sends it.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker
from rq.worker import BaseWorker

from app.embedded_redis import free_port, port_is_free
from app.supervisor import STOP_GRACE
from cronwork.settings import PROJECT_ROOT, RUN_SETTINGS_FILE
from jobs.worker.defaults import SHUTDOWN_GRACE
from tests.conftest import http_answers, wait_until

SLOW_JOB_SECONDS = 3
SCHEDULE = f"""
[defaults]
timezone = "UTC"

[schedules.health_check]
func = "jobs.system.health_check"
every = "30s"
timeout = "20s"
misfire = "skip"

[schedules.slow]
func = "jobs.diagnostics.sleep"
cron = "0 0 1 1 *"
kwargs = {{ seconds = {SLOW_JOB_SECONDS} }}
timeout = "1m"
"""


class DevRun:
    """One `python -m app.devrun` in its own process group, its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.devrun"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def ctrl_c(self, timeout: float = 60) -> int:
        """SIGINT to the process group, as a terminal's Ctrl-C; the exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        status = self.process.wait(timeout)
        self._reader.join(5)
        return status

    def output(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        """Kill whatever is left of the group; close the pipe."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


def second_terminal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A `flask --app app` command with nothing exported but where the instance lives."""
    clean = {k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL", "SCHEDULE_FILE")}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=PROJECT_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(SCHEDULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "ADMIN_"))}
    env.update(
        CRONWORK_INSTANCE_DIR=str(tmp_path / "instance"),
        EMBEDDED_REDIS_PORT=str(free_port()),
        WEB_PORT=str(free_port()),
        SCHEDULE_FILE=str(schedule),
        WEB_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def devruns() -> Iterator[list[DevRun]]:
    started: list[DevRun] = []
    yield started
    for run in started:
        run.close()


def _healthz_status(env: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{env['WEB_PORT']}/healthz", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return 0


def _workers(redis: Redis) -> list[BaseWorker]:
    return Worker.all(connection=redis)


def _start(env: dict[str, str], devruns: list[DevRun]) -> tuple[DevRun, Redis]:
    run = DevRun(env)
    devruns.append(run)
    settings_file = Path(env["CRONWORK_INSTANCE_DIR"]) / RUN_SETTINGS_FILE
    wait_until(lambda: settings_file.exists() or run.process.poll() is not None, 60)
    assert run.process.poll() is None, run.output()
    redis = Redis.from_url(json.loads(settings_file.read_text())["REDIS_URL"])
    wait_until(lambda: http_answers(f"http://127.0.0.1:{env['WEB_PORT']}/healthz") and _workers(redis), 60)
    return run, redis


def _after_signal(output: str) -> list[str]:
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if "SIGINT received" in line)
    return lines[first:]


def test_the_supervisor_waits_longer_than_a_worker_lets_its_job_run() -> None:
    assert STOP_GRACE > SHUTDOWN_GRACE


EARLY_SIGNAL = """
import os, signal, sys
from app.supervisor import Supervisor

class Early(Supervisor):
    def _start(self):
        super()._start()
        os.kill(os.getpid(), signal.SIGINT)  # before honcho has read a single "started" event

supervisor = Early.from_procfile("a: sleep 30\\nb: sleep 30\\n", dict(os.environ), ".")
supervisor.loop()
sys.stdout.write(f"returncode {supervisor.returncode}\\n")
"""


def test_a_signal_before_every_process_is_known_still_stops_them_all() -> None:
    """honcho learns each pid from an event; its stop raised KeyError('pid') before then."""
    done = subprocess.run(
        [sys.executable, "-c", EARLY_SIGNAL], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.stdout.count("sending SIGTERM") == 2 and "returncode 130" in done.stdout, done.stdout


def test_ctrl_c_stops_every_process_then_redis_and_a_restart_has_no_ghost(
    run_env: dict[str, str], devruns: list[DevRun]
) -> None:
    started = time.monotonic()
    run, redis = _start(run_env, devruns)
    redis_port = int(run_env["EMBEDDED_REDIS_PORT"])
    # Healthy from the first seconds: no wait for the first 30 s health_check tick.
    wait_until(lambda: _healthz_status(run_env) == 200, 20)
    assert time.monotonic() - started < 30

    # A second terminal reaches the same Redis and database without exporting anything.
    listed = second_terminal(run_env, "schedules", "list")
    assert listed.returncode == 0, listed.stderr
    assert "slow" in listed.stdout and "health_check" in listed.stdout
    enqueued = second_terminal(run_env, "schedules", "run", "slow")
    assert enqueued.returncode == 0, enqueued.stderr

    def slow_state() -> str | None:
        history = second_terminal(run_env, "schedules", "history", "slow", "--json")
        records = json.loads(history.stdout or "[]")
        return records[0].get("state") if records else None

    wait_until(lambda: slow_state() == "running", 30)

    # Ctrl-C while the job runs: it finishes inside the grace, every process stops, Redis last.
    started = time.monotonic()
    assert run.ctrl_c() == 0, run.output()
    stop_seconds = time.monotonic() - started
    after = _after_signal(run.output())
    report = f"{len(after)} lines in {stop_seconds:.1f}s after Ctrl-C:\n" + "\n".join(after)
    assert "Traceback" not in run.output(), report
    assert "SIGKILL" not in run.output(), report
    stopped = [i for i, line in enumerate(after) if " stopped (rc=" in line]
    assert len(stopped) == 4, report  # web, scheduler, worker, worker-heavy
    assert after[-1] == "redis stopped" and max(stopped) < len(after) - 1, report
    assert len(after) <= 40, report
    assert port_is_free(redis_port) and run.process.poll() is not None
    assert not (Path(run_env["CRONWORK_INSTANCE_DIR"]) / RUN_SETTINGS_FILE).exists()

    # Restart: the job that ran through the stop ended well, and only the new workers are listed.
    run, redis = _start(run_env, devruns)
    assert slow_state() == "succeeded"
    wait_until(lambda: len(_workers(redis)) >= 2, 30)  # default, and heavy (the CLIP job's)
    assert sorted(w.queue_names() for w in _workers(redis)) == [["default"], ["heavy"]]
    assert run.ctrl_c() == 0, run.output()
    assert "Traceback" not in run.output(), run.output()


def test_ctrl_c_on_a_terminal_reaches_make_run_and_not_its_parent(run_env: dict[str, str]) -> None:
    """On a terminal, Ctrl-C is the character ^C: the terminal signals its foreground process
    group. `make` is in it too, and would end a clean stop with `make: *** [run] Interrupt`;
    here a shell with a SIGINT trap stands in for make."""
    settings_file = Path(run_env["CRONWORK_INSTANCE_DIR"]) / RUN_SETTINGS_FILE
    parent = f'trap "echo PARENT_GOT_SIGINT" INT; {sys.executable} -m app.devrun; echo "EXIT=$?"'
    pid, terminal = pty.fork()
    if pid == 0:  # the child: session leader with the pseudo-terminal as its terminal
        os.chdir(PROJECT_ROOT)
        os.execve("/bin/sh", ["sh", "-c", parent], run_env)
    output = b""

    def read_for(seconds: float, until: bytes = b"") -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in output):
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(terminal, 65536)
                except OSError:  # the other side is closed: everything exited
                    return
                if not chunk:
                    return
                output += chunk

    try:
        read_for(60, until=b"Redis last.")
        wait_until(settings_file.exists, 10)
        os.write(terminal, b"\x03")
        read_for(60, until=b"EXIT=")
        read_for(1)
    finally:
        os.close(terminal)
        os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "EXIT=0" in text, text
    assert "PARENT_GOT_SIGINT" not in text and "Traceback" not in text, text
    assert "redis stopped" in text and not settings_file.exists(), text


def test_a_schedule_typo_is_the_only_thing_printed(run_env: dict[str, str], devruns: list[DevRun]) -> None:
    Path(run_env["SCHEDULE_FILE"]).write_text(SCHEDULE.replace('every = "30s"', 'every = "30 parsecs"'))
    run = DevRun(run_env)
    devruns.append(run)
    assert run.process.wait(30) == 2
    run._reader.join(5)
    assert len(run.lines) == 1, run.output()
    assert "health_check" in run.lines[0] and "every" in run.lines[0], run.output()
    assert port_is_free(int(run_env["EMBEDDED_REDIS_PORT"]))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:////proc/cronwork-test/db.sqlite", "does not exist"),
        ("sqlite:////proc/cronwork.db", "unable to open database file"),
        ("nosuchdb://user:secret@host/db", "no driver for 'nosuchdb'"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_naming_it_at_once(
    run_env: dict[str, str], devruns: list[DevRun], url: str, says: str
) -> None:
    run = DevRun({**run_env, "DATABASE_URL": url, "STARTUP_TIMEOUT": "30"})
    devruns.append(run)
    started = time.monotonic()
    assert run.process.wait(30) != 0
    assert time.monotonic() - started < 10  # not the 30 s start-up wait: no wait can help
    run._reader.join(5)
    assert len(run.lines) == 1, run.output()
    assert says in run.lines[0] and "secret" not in run.lines[0], run.output()
    shown = url.replace("secret", "***")
    assert shown in run.lines[0], run.output()
    assert port_is_free(int(run_env["EMBEDDED_REDIS_PORT"]))


def test_flask_commands_say_in_one_line_that_redis_is_down(run_env: dict[str, str]) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "schedules", "list"],
        cwd=PROJECT_ROOT,
        env={**run_env, "REDIS_URL": down, "DATABASE_URL": "sqlite://"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert down in done.stderr and "Traceback" not in done.stderr
