"""`flask schedules list|next|run|pause|resume|history`, consistent with the API."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from redis import Redis

from cronwork.ledger import Ledger
from cronwork.serializer import json_queue
from tests.app.conftest import KEYS, bearer, seed_ledger

pytestmark = pytest.mark.usefixtures("registered")


@pytest.fixture
def runner(ops_app: Flask) -> FlaskCliRunner:
    return ops_app.test_cli_runner()


def test_list_shows_every_schedule(runner: FlaskCliRunner, redis: Redis, ops_app: Flask) -> None:
    seed_ledger(redis, "hc", ["succeeded", "failed"])
    redis.set(KEYS.failure_streak("hc"), 1)
    out = runner.invoke(args=["schedules", "list"])
    assert out.exit_code == 0, out.output
    lines = {line.split("\t")[0]: line for line in out.output.splitlines()}
    assert sorted(lines) == ["backfill", "hc", "nightly"]
    assert "every 30 minutes (Asia/Shanghai)" in lines["hc"] and "last failed" in lines["hc"]
    assert "1 failures in a row" in lines["hc"]
    assert "disabled" in lines["backfill"] and "never ran" in lines["nightly"]

    as_json = json.loads(runner.invoke(args=["schedules", "list", "--json"]).output)
    api = ops_app.test_client().get("/api/schedules", headers=bearer()).get_json()["schedules"]
    assert as_json == api


def test_next_prints_n_fire_times(runner: FlaskCliRunner) -> None:
    out = runner.invoke(args=["schedules", "next", "nightly", "3"])
    assert out.exit_code == 0, out.output
    times = [datetime.fromisoformat(line.split("\t")[0]) for line in out.output.splitlines()]
    assert len(times) == 3 and times == sorted(times)
    assert all(line.split("\t")[1].endswith("02:00 CST") for line in out.output.splitlines())
    assert len(runner.invoke(args=["schedules", "next", "hc"]).output.splitlines()) == 5


def test_run_pause_resume(runner: FlaskCliRunner, redis: Redis) -> None:
    ran = runner.invoke(args=["schedules", "run", "hc"])
    assert ran.exit_code == 0 and ran.output.startswith("enqueued cronwork-hc-")
    assert len(json_queue("default", redis)) == 1
    assert Ledger(redis, KEYS).history("hc", 1)[0]["trigger"] == "manual"

    assert runner.invoke(args=["schedules", "pause", "hc"]).exit_code != 0  # --reason is required
    paused = runner.invoke(args=["schedules", "pause", "hc", "--reason", "disk full"])
    assert paused.exit_code == 0 and json.loads(redis.hget(KEYS.paused, "hc"))["reason"] == "disk full"
    assert "paused: disk full" in runner.invoke(args=["schedules", "list"]).output
    assert runner.invoke(args=["schedules", "resume", "hc"]).output == "resumed hc\n"
    assert runner.invoke(args=["schedules", "resume", "hc"]).output == "hc was not paused\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown schedule 'nope'"),
        (["pause", "nope", "--reason", "x"], "unknown schedule 'nope'"),
        (["resume", "nope"], "unknown schedule 'nope'"),
        (["next", "nope"], "unknown schedule 'nope'"),
        (["history", "nope"], "unknown schedule 'nope'"),
        (["run", "backfill"], "not registered"),
        (["pause", "hc", "--reason", "x" * 501], "too long"),
    ],
)
def test_refusals_exit_non_zero_with_the_reason(
    runner: FlaskCliRunner, args: list[str], message: str
) -> None:
    out = runner.invoke(args=["schedules", *args])
    assert out.exit_code != 0
    assert message in out.output


def test_history_text_and_json(runner: FlaskCliRunner, redis: Redis) -> None:
    ticks = seed_ledger(redis, "hc", ["succeeded", "failed"])
    text = runner.invoke(args=["schedules", "history", "hc"]).output.splitlines()
    assert text[0].split("\t")[1:3] == ["failed", KEYS.run_id("hc", ticks[1])]
    assert text[0].endswith(f"RuntimeError: boom at {ticks[1]}")
    records = json.loads(runner.invoke(args=["schedules", "history", "hc", "--json", "--limit", "1"]).output)
    assert [r["tick"] for r in records] == [ticks[1]]
