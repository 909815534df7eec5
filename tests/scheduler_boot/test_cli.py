"""`python -m scheduler_boot --check / --next N` as an operator runs them."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis

from app.config import PROJECT_ROOT
from cronwork.keys import Keys
from cronwork.serializer import json_queue
from tests.conftest import Processes, wait_until

KEYS = Keys()

SCHEDULE = """
[schedules.daily_env_stats]
func = "jobs.system.health_check"
cron = "20 3 1 * * *"
[schedules.nightly_ny]
func = "jobs.system.health_check"
cron = "30 2 * * *"
timezone = "America/New_York"
[schedules.off]
func = "jobs.system.health_check"
every = "1h"
enabled = false
"""


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler_boot", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_accepts_a_good_file_and_needs_no_redis(tmp_path: Path, process_env: dict[str, str]) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(SCHEDULE)
    done = run("--check", "--file", str(path), env={**process_env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == 0, done.stderr
    assert "ok, 3 schedules (2 enabled)" in done.stdout


def test_check_rejects_a_broken_file_with_exit_2(tmp_path: Path, process_env: dict[str, str]) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(SCHEDULE.replace('cron = "30 2 * * *"', 'cron = "30 25 * * *"'))
    done = run("--check", "--file", str(path), env=process_env)
    assert done.returncode == 2
    assert done.stderr.startswith("schedule.toml: schedules.nightly_ny.cron:")


def test_next_prints_fire_times_in_each_schedules_zone(tmp_path: Path, process_env: dict[str, str]) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(SCHEDULE)
    done = run("--next", "3", "--file", str(path), env=process_env)
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [name for name, _ in lines] == ["daily_env_stats"] * 3 + ["nightly_ny"] * 3
    shanghai = [datetime.fromisoformat(when) for name, when in lines if name == "daily_env_stats"]
    assert all(t.strftime("%H:%M:%S%z") == "01:03:20+0800" for t in shanghai)
    new_york = [datetime.fromisoformat(when) for name, when in lines if name == "nightly_ny"]
    assert all(t.utcoffset() is not None and t.minute == 30 for t in new_york)


def test_restart_after_a_one_off_fired_is_not_a_broken_file(
    tmp_path: Path, process_env: dict[str, str], processes: Processes, redis: Redis
) -> None:
    """A scheduler restarted (crash, deploy) after its one-off ran must not exit 2 for ever."""
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    path = tmp_path / "schedule.toml"
    path.write_text(
        '[schedules.backfill]\nfunc = "jobs.system.health_check"\ntimezone = "UTC"\n'
        f"at = {at.replace(tzinfo=None).isoformat()}\n"
    )
    loop = processes.start("-m", "scheduler_boot", "--file", str(path), name="scheduler")
    wait_until(lambda: redis.hget(KEYS.oneoffs_fired, "backfill") is not None, timeout=30)
    loop.send_signal(signal.SIGTERM)
    assert loop.wait(30) == 0
    assert int(redis.hget(KEYS.oneoffs_fired, "backfill")) == int(at.timestamp())
    assert json_queue("default", redis).job_ids == [KEYS.run_id("backfill", int(at.timestamp()))]

    restart = run("--sync-only", "--file", str(path), env=process_env)
    assert restart.returncode == 0, restart.stderr
    again = run("--sync-only", "--file", str(path), env=process_env)
    assert again.returncode == 0 and "no changes" in again.stdout, again.stdout + again.stderr
    assert len(json_queue("default", redis).job_ids) == 1  # done, never re-run
    # Offline, --check cannot know it ran: it still says so, and how to clean up.
    check = run("--check", "--file", str(path), env=process_env)
    assert check.returncode == 2 and "is in the past; remove it or set enabled = false" in check.stderr


UNREACHABLE_DB = "postgresql://cronwork:secret@127.0.0.1:1/nowhere"


def test_the_scheduler_fires_with_the_database_down(
    tmp_path: Path, processes: Processes, redis: Redis
) -> None:
    """Issue 10: the scheduler needs Redis only; a database outage must not stop ticks."""
    path = tmp_path / "schedule.toml"
    path.write_text(
        '[schedules.tick]\nfunc = "jobs.system.health_check"\nevery = "2s"\ntimeout = "1s"\n'
    )
    loop = processes.start(
        "-m", "scheduler_boot", "--file", str(path), name="scheduler",
        extra_env={"DATABASE_URL": UNREACHABLE_DB, "STARTUP_TIMEOUT": "1"},
    )
    job_ids = wait_until(lambda: json_queue("default", redis).job_ids, timeout=30)
    assert isinstance(job_ids, list) and job_ids[0].startswith("cronwork-tick-")
    assert loop.poll() is None, processes.output(loop)
    assert "database" not in processes.output(loop).lower()


def test_sync_imports_neither_the_app_nor_the_jobs(tmp_path: Path, process_env: dict[str, str]) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(SCHEDULE)
    code = (
        "import sys; from scheduler_boot.__main__ import main; "
        f"code = main(['--sync-only', '--file', {str(path)!r}]); "
        "print(code, sorted(m for m in ('app', 'flask', 'sqlalchemy', 'jobs.system') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        env={**process_env, "DATABASE_URL": UNREACHABLE_DB},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_a_bad_setting_exits_2_naming_its_variable(tmp_path: Path, process_env: dict[str, str]) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(SCHEDULE)
    done = run("--sync-only", "--file", str(path), env={**process_env, "STARTUP_TIMEOUT": "abc"})
    assert done.returncode == 2
    assert done.stderr.strip() == "scheduler_boot: STARTUP_TIMEOUT: expected a number of seconds, got 'abc'"
