"""Job modules are read once per parse and again by the next parse (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jobs
from cronwork import loader
from cronwork.loader import load_schedule
from cronwork.spec import ScheduleError

TWO_ON_ONE_MODULE = """
[schedules.first]
func = "jobs.system.health_check"
cron = "0 * * * *"

[schedules.second]
func = "jobs.system.health_check"
every = "1h"

[schedules.other]
func = "jobs.tasks.update_time_progress"
every = "1h"
"""


def test_a_module_named_by_many_schedules_is_read_once_per_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = loader._module_tree

    def counting(module_name: str) -> ast.Module:
        reads.append(module_name)
        return real(module_name)

    monkeypatch.setattr(loader, "_module_tree", counting)
    path = tmp_path / "schedule.toml"
    path.write_text(TWO_ON_ONE_MODULE)
    assert set(load_schedule(path).specs) == {"first", "second", "other"}
    assert sorted(reads) == ["jobs.system", "jobs.tasks"]
    load_schedule(path)
    assert sorted(reads) == ["jobs.system", "jobs.system", "jobs.tasks", "jobs.tasks"]


def test_a_missing_module_is_reported_for_every_schedule_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(TWO_ON_ONE_MODULE.replace("jobs.system.", "jobs.nothing."))
    with pytest.raises(ScheduleError) as info:
        load_schedule(path)
    assert info.value.errors == [
        f"schedule.toml: schedules.{name}.func: cannot import 'jobs.nothing': no module named 'jobs.nothing'"
        for name in ("first", "second")
    ]


def test_a_job_module_edited_between_two_loads_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "extra_jobs"
    folder.mkdir()
    module = folder / "scale_probe_job.py"
    module.write_text("def probe_job():\n    return {}\n")
    monkeypatch.setattr(jobs, "__path__", [*jobs.__path__, str(folder)])
    path = tmp_path / "schedule.toml"
    path.write_text('[schedules.probe]\nfunc = "jobs.scale_probe_job.probe_job"\nevery = "1h"\n')
    assert set(load_schedule(path).specs) == {"probe"}

    module.write_text("PROBE_JOB = 1\n")
    with pytest.raises(ScheduleError) as info:
        load_schedule(path)
    assert info.value.errors == [
        "schedule.toml: schedules.probe.func: 'jobs.scale_probe_job' has no callable 'probe_job'"
    ]
