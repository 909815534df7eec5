"""Schedule file validation: a corpus of broken files, each named precisely; a pure loader."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronwork.loader import accepts_keyword, expired_message, load_schedule
from cronwork.settings import DEFAULT_SCHEDULE_FILE, PROJECT_ROOT
from cronwork.spec import ScheduleError, ScheduleSpec

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)

GOOD = """
[defaults]
timezone = "Asia/Shanghai"

[schedules.daily_env_stats]
func = "jobs.system.health_check"
cron = "20 3 1 * * *"
retries = 2
kwargs = { source = "test" }
"""

# (file body, expected substring of the single error line)
BROKEN = {
    "unknown_key": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\nevery = "1m"\ntimeout = "10s"\ncolour = "red"',
        "schedules.a.colour: unknown key",
    ),
    "bad_cron": (
        '[schedules.daily_env_stats]\nfunc = "jobs.system.health_check"\ncron = "* * *"',
        "schedule.toml: schedules.daily_env_stats.cron:",
    ),
    "bad_cron_range": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "61 * * * *"',
        "schedules.a.cron:",
    ),
    "bad_duration": ('[schedules.a]\nfunc = "jobs.system.health_check"\nevery = "10x"', "schedules.a.every:"),
    "bad_timeout": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\ntimeout = 5',
        "schedules.a.timeout: expected a string",
    ),
    "unknown_zone": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\ntimezone = "Mars/Base"',
        "schedules.a.timezone: unknown time zone",
    ),
    "func_outside_jobs": (
        '[schedules.a]\nfunc = "os.system"\ncron = "0 * * * *"',
        "schedules.a.func: 'os.system' is outside the jobs package",
    ),
    "func_missing": (
        '[schedules.a]\nfunc = "jobs.system.nope"\ncron = "0 * * * *"',
        "schedules.a.func: 'jobs.system' has no callable 'nope'",
    ),
    "func_module_missing": (
        '[schedules.a]\nfunc = "jobs.nothing.here"\ncron = "0 * * * *"',
        "schedules.a.func: cannot import",
    ),
    "func_absent": ('[schedules.a]\ncron = "0 * * * *"', "schedules.a.func: required"),
    "bad_name": (
        '[schedules.Bad_Name]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"',
        "schedules.Bad_Name: invalid name",
    ),
    "name_like_run_id": (
        '[schedules.a-123]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"',
        "must not end in '-<digits>'",
    ),
    "two_triggers": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nevery = "1h"',
        "exactly one of cron, every, at is required (found cron, every)",
    ),
    "no_trigger": ('[schedules.a]\nfunc = "jobs.system.health_check"', "(found none)"),
    "func_not_callable": (
        '[schedules.a]\nfunc = "jobs.diagnostics.NOT_THERE"\ncron = "0 * * * *"',
        "schedules.a.func: 'jobs.diagnostics' has no callable 'NOT_THERE'",
    ),
    "func_imported": (
        '[schedules.a]\nfunc = "jobs.system.write_heartbeat"\ncron = "0 * * * *"',
        "schedules.a.func: 'jobs.system' imports 'write_heartbeat': name the function where it is defined",
    ),
    "func_worker_machinery": (
        '[schedules.a]\nfunc = "jobs.worker.cli.main"\ncron = "0 * * * *"',
        "schedules.a.func: 'jobs.worker.cli.main' is in the worker's own modules (jobs.worker, ",
    ),
    "at_with_offset": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\nat = 2030-01-01T10:00:00+08:00',
        "schedules.a.at: give a local time",
    ),
    "timeout_over_interval": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\nevery = "1m"\ntimeout = "5m"',
        "schedules.a.timeout: 300s is longer than the 60s between runs",
    ),
    "timeout_over_cron_gap": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "* * * * *"',
        "schedules.a.timeout: 300s is longer than the 60s between runs",
    ),
    "bad_misfire": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nmisfire = "later"',
        "schedules.a.misfire: expected one of run_latest, skip",
    ),
    "bad_overlap": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\noverlap = 1',
        "schedules.a.overlap: expected one of",
    ),
    "negative_retries": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nretries = -1',
        "schedules.a.retries: expected a whole number",
    ),
    "bool_retries": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nretries = true',
        "schedules.a.retries",
    ),
    "bad_enabled": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nenabled = "yes"',
        "schedules.a.enabled: expected true or false",
    ),
    "args_not_json": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nargs = [1979-05-27T07:32:00]',
        "schedules.a.args: only JSON-compatible values",
    ),
    "kwargs_reserved": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nkwargs = { scheduled_for = "x" }',
        "schedules.a.kwargs: scheduled_for is reserved",
    ),
    "bad_default": (
        '[defaults]\ncolour = 1\n[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"',
        "defaults.colour: unknown key",
    ),
    "bad_top_level": (
        'jobs = 1\n[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"',
        "jobs: unknown top-level key",
    ),
    "no_schedules": ('[defaults]\nqueue = "x"', "schedules: expected at least one"),
    "not_toml": ("[schedules.a\nfunc=", "not valid TOML"),
    "keep_runs_zero": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nkeep_runs = 0',
        "schedule.toml: schedules.a.keep_runs: expected a whole number from 1 to 10000, got 0",
    ),
    "keep_runs_too_many": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nkeep_runs = 10001',
        "schedules.a.keep_runs: expected a whole number from 1 to 10000, got 10001",
    ),
    "keep_runs_not_a_number": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nkeep_runs = "50"',
        "schedules.a.keep_runs: expected a whole number from 1 to 10000, got '50'",
    ),
    "keep_runs_bool": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nkeep_runs = true',
        "schedules.a.keep_runs: expected a whole number from 1 to 10000, got True",
    ),
    "keep_runs_float": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nkeep_runs = 10.0',
        "schedules.a.keep_runs: expected a whole number from 1 to 10000, got 10.0",
    ),
    "keep_runs_bad_default": (
        '[defaults]\nkeep_runs = -1\n[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"',
        "schedules.a.keep_runs: expected a whole number from 1 to 10000, got -1",
    ),
    "bad_backoff": (
        '[schedules.a]\nfunc = "jobs.system.health_check"\ncron = "0 * * * *"\nretry_backoff = ["1m", "soon"]',
        "schedules.a.retry_backoff:",
    ),
}


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "schedule.toml"
    path.write_text(body)
    return path


def test_good_file_parses_into_frozen_specs(tmp_path: Path) -> None:
    schedule = load_schedule(write(tmp_path, GOOD))
    spec = schedule.specs["daily_env_stats"]
    assert spec.retries == 2 and spec.timeout == 300 and spec.timezone == "Asia/Shanghai"
    assert spec.kwargs == {"source": "test"}
    # 01:03:20 in Shanghai is 17:03:20 UTC the day before.
    assert spec.next_fire(NOW) == datetime(2026, 11, 22, 17, 3, 20, tzinfo=UTC)
    with pytest.raises(AttributeError):
        spec.retries = 3  # type: ignore[misc]


def test_spec_round_trips_through_its_dict_form(tmp_path: Path) -> None:
    spec = load_schedule(write(tmp_path, GOOD)).specs["daily_env_stats"]
    again = ScheduleSpec.from_dict(spec.to_dict())
    assert again == spec
    assert again.definition_hash() == spec.definition_hash()


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_names_file_schedule_and_field(tmp_path: Path, case: str) -> None:
    body, expected = BROKEN[case]
    with pytest.raises(ScheduleError) as info:
        load_schedule(write(tmp_path, body))
    assert any(expected in line for line in info.value.errors), info.value.errors
    assert all(line.startswith(("schedule.toml", str(tmp_path))) for line in info.value.errors)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    body = '[schedules.a]\nfunc = "os.system"\ncron = "* *"\ntimezone = "Nowhere"\nretries = -2'
    with pytest.raises(ScheduleError) as info:
        load_schedule(write(tmp_path, body))
    fields = {line.split(": ")[1] for line in info.value.errors}
    assert {"schedules.a.func", "schedules.a.timezone", "schedules.a.retries"} <= fields


def test_disabled_past_one_off_is_accepted(tmp_path: Path) -> None:
    body = '[schedules.a]\nfunc = "jobs.system.health_check"\nat = 2020-01-01T10:00:00\nenabled = false'
    schedule = load_schedule(write(tmp_path, body))
    assert schedule.enabled == {}


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="file not found"):
        load_schedule(tmp_path / "absent.toml")


def test_the_shipped_schedule_is_valid() -> None:
    schedule = load_schedule(DEFAULT_SCHEDULE_FILE)
    # Every periodic job of the seed systems Cronwork replaces is declared.
    assert set(schedule.enabled) == {
        "health_check", "update_stage_status", "reset_periodic_tasks", "check_task_warnings",
        "update_time_progress", "cleanup_old_data", "process_scheduled_shipments",
        "daily_env_stats", "hourly_setpoint_monitoring", "daily_report", "daily_clip_inference",
    }
    assert schedule.specs["daily_env_stats"].next_fire(datetime(2026, 11, 22, tzinfo=UTC)) == datetime(
        2026, 11, 22, 17, 3, 20, tzinfo=UTC
    )
    # 03:02:25 in Shanghai, on its own queue.
    clip = schedule.specs["daily_clip_inference"]
    assert clip.next_fire(datetime(2026, 11, 22, tzinfo=UTC)) == datetime(2026, 11, 22, 19, 2, 25, tzinfo=UTC)
    assert clip.queue == "heavy"


PAST_ONE_OFF = '[schedules.a]\nfunc = "jobs.system.health_check"\ntimezone = "UTC"\nat = 2020-01-01T10:00:00'


def test_a_past_one_off_parses_like_any_other_and_is_reported_expired(tmp_path: Path) -> None:
    """Issue 10: parsing never depends on the clock; "in the past" is the sync's business."""
    path = write(tmp_path, PAST_ONE_OFF)
    first, second = load_schedule(path), load_schedule(path)
    assert first == second and set(first.enabled) == {"a"}
    spec = first.specs["a"]
    at = datetime(2020, 1, 1, 10, tzinfo=UTC)
    assert not spec.is_expired(at - timedelta(seconds=1)) and spec.is_expired(at)
    assert first.expired(at) == ["a"] and first.expired(at - timedelta(days=1)) == []
    assert expired_message(path, spec) == (
        "schedule.toml: schedules.a.at: 2020-01-01T10:00:00 is in the past; remove it or set enabled = false"
    )


def test_loading_imports_no_job_code() -> None:
    """func is checked from source: the scheduler must not need the Flask app (issue 10)."""
    code = (
        "import sys; from cronwork.loader import load_schedule; load_schedule(sys.argv[1]); "
        "print(sorted(m for m in ('app', 'jobs.system', 'flask') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(DEFAULT_SCHEDULE_FILE)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert done.stdout.strip() == "[]"


def test_accepts_keyword_reads_the_signature_from_source() -> None:
    assert accepts_keyword("jobs.tasks.update_time_progress", "scheduled_for") is True
    assert accepts_keyword("jobs.stages.update_stage_status", "scheduled_for") is False
    assert accepts_keyword("jobs.nothing.here", "scheduled_for") is None


KEEP_RUNS = """
[defaults]
keep_runs = 20

[schedules.inherits]
func = "jobs.system.health_check"
cron = "0 * * * *"

[schedules.own]
func = "jobs.system.health_check"
cron = "0 * * * *"
keep_runs = 10000

[schedules.least]
func = "jobs.system.health_check"
cron = "0 * * * *"
keep_runs = 1
"""


def test_keep_runs_defaults_to_100_and_is_inherited_from_defaults(tmp_path: Path) -> None:
    assert load_schedule(write(tmp_path, GOOD)).specs["daily_env_stats"].keep_runs == 100
    specs = load_schedule(write(tmp_path, KEEP_RUNS)).specs
    kept = {name: spec.keep_runs for name, spec in specs.items()}
    assert kept == {"inherits": 20, "own": 10000, "least": 1}
    assert ScheduleSpec.from_dict(specs["own"].to_dict()) == specs["own"]


def test_keep_runs_is_part_of_the_definition(tmp_path: Path) -> None:
    schedule = load_schedule(write(tmp_path, KEEP_RUNS))
    inherits, own = schedule.specs["inherits"], schedule.specs["own"]
    assert inherits.to_dict()["keep_runs"] == 20
    assert replace(own, name="inherits").definition_hash() != inherits.definition_hash()
    assert replace(own, name="inherits", keep_runs=20).definition_hash() == inherits.definition_hash()


def test_a_definition_written_before_keep_runs_reads_with_the_default(tmp_path: Path) -> None:
    spec = load_schedule(write(tmp_path, GOOD)).specs["daily_env_stats"]
    old = {key: value for key, value in spec.to_dict().items() if key != "keep_runs"}
    again = ScheduleSpec.from_dict(old)
    assert again.keep_runs == 100 and again == spec
