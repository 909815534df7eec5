"""`flask schedules history NAME --json` prints the ledger, newest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Flask
from redis import Redis

from cronwork.keys import Keys
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan
from tests.scheduler_boot.helpers import schedule_from

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def test_history_json_lists_ticks_newest_first(app: Flask, redis: Redis) -> None:
    text = (
        '[schedules.hc]\nfunc = "jobs.system.health_check"\nevery = "1m"\ntimeout = "30s"\nmisfire = "skip"\n'
    )
    apply_plan(redis, schedule_from(text, T0).specs, Keys(), T0)
    now = {"t": T0 + timedelta(minutes=1, seconds=1)}
    scheduler = CronworkScheduler(redis, Keys(), clock=lambda: now["t"].timestamp())
    scheduler.enqueue_jobs()
    now["t"] = T0 + timedelta(minutes=3, seconds=30)
    scheduler.enqueue_jobs()

    result = app.test_cli_runner().invoke(args=["schedules", "history", "hc", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["state"] for r in records] == ["missed", "missed", "enqueued"]
    assert records[-1]["job_id"] == f"cronwork-hc-{int((T0 + timedelta(minutes=1)).timestamp())}"
    assert {"tick", "state", "enqueued_at"} <= set(records[-1])
    assert records[0]["tick"] > records[1]["tick"] > records[2]["tick"]


def test_history_of_unknown_schedule_fails(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["schedules", "history", "nope"])
    assert result.exit_code != 0
    assert "unknown schedule 'nope'" in result.output
