"""A sync of the file never touches runtime schedules; a declared name one holds is a clash."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from redis import Redis

from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.store import ScheduleSource
from cronwork.templates import TemplateWriter
from scheduler_boot.sync import apply_plan, compute_plan
from tests.scheduler_boot.helpers import schedule_from

NOW = datetime(2026, 11, 22, 4, 0, 7, tzinfo=UTC)
KEYS = Keys()

FILE = """
[schedules.hourly]
func = "jobs.system.health_check"
cron = "0 * * * *"
"""
RUNTIME = """
[schedules.adhoc]
func = "jobs.system.health_check"
every = "10m"
[schedules.hourly]
func = "jobs.diagnostics.count_users"
cron = "30 * * * *"
"""


def add_runtime(redis: Redis, name: str) -> None:
    """Register `name` of RUNTIME as an operator's runtime schedule would be."""
    spec = schedule_from(RUNTIME, NOW).specs[name]
    with redis.pipeline(transaction=True) as pipe:
        TemplateWriter(redis, KEYS).write(pipe, spec, NOW, False, ScheduleSource.RUNTIME, {"every": "10m"})
        pipe.execute()


def scores(redis: Redis) -> dict[str, float]:
    return {m.decode(): s for m, s in redis.zrange(RQ_SCHEDULER_SET, 0, -1, withscores=True)}


def test_a_sync_neither_removes_nor_updates_a_runtime_schedule(redis: Redis) -> None:
    apply_plan(redis, schedule_from(FILE, NOW).specs, KEYS, NOW)
    add_runtime(redis, "adhoc")
    before = redis.hget(KEYS.definitions, "adhoc"), redis.hgetall(KEYS.template_key("adhoc")), scores(redis)
    plan = apply_plan(redis, schedule_from(FILE, NOW).specs, KEYS, NOW)
    assert (plan.removed, plan.updated, plan.added, plan.runtime) == ([], [], [], ["adhoc"])
    assert plan.render() == "no changes (1 schedules unchanged, 1 runtime left alone)"
    after = redis.hget(KEYS.definitions, "adhoc"), redis.hgetall(KEYS.template_key("adhoc")), scores(redis)
    assert after == before
    assert store.definitions(redis, KEYS)["adhoc"].source is ScheduleSource.RUNTIME
    # A sync that updates the file's schedules, then one that declares none, still leave it alone.
    plan = apply_plan(redis, schedule_from(FILE.replace("0 * * * *", "5 * * * *"), NOW).specs, KEYS, NOW)
    assert plan.updated == ["hourly"]
    assert apply_plan(redis, {}, KEYS, NOW).removed == ["hourly"]
    assert set(scores(redis)) == {"cronwork-adhoc"}
    assert redis.hget(KEYS.definitions, "adhoc") == before[0]


def test_a_declared_name_held_by_a_runtime_schedule_is_a_clash_reported_not_written(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    add_runtime(redis, "hourly")  # an operator took the name before the file declared it
    runtime = redis.hget(KEYS.definitions, "hourly")
    caplog.set_level(logging.WARNING, logger="scheduler_boot.sync")
    plan = apply_plan(redis, schedule_from(FILE, NOW).specs, KEYS, NOW)
    assert (plan.clashes, plan.added, plan.updated, plan.removed) == (["hourly"], [], [], [])
    assert redis.hget(KEYS.definitions, "hourly") == runtime  # the runtime one is kept as it was
    assert json.loads(runtime)["spec"]["func"] == "jobs.diagnostics.count_users"
    text = plan.render()
    assert text.startswith("no changes (0 schedules unchanged, 1 clashing, 1 runtime left alone)")
    assert "! hourly: declared in the file, but a runtime schedule holds this name" in text
    assert "sync schedule=hourly action=clash" in caplog.text
    # The dry run (what --dry-run prints) reports it too, and a disabled declaration clashes as well.
    disabled = schedule_from(FILE + "enabled = false\n", NOW).specs
    assert compute_plan(redis, disabled, KEYS, NOW).clashes == ["hourly"]


def test_a_definition_stored_before_sources_existed_reads_as_declared(redis: Redis) -> None:
    apply_plan(redis, schedule_from(FILE, NOW).specs, KEYS, NOW)
    stored = json.loads(redis.hget(KEYS.definitions, "hourly"))
    assert stored["source"] == "declared"
    redis.hset(KEYS.definitions, "hourly", json.dumps({"hash": stored["hash"], "spec": stored["spec"]}))
    assert store.definitions(redis, KEYS)["hourly"].source is ScheduleSource.DECLARED
    plan = apply_plan(redis, schedule_from(FILE, NOW).specs, KEYS, NOW)
    assert plan.unchanged == ["hourly"] and not plan.clashes  # the upgrade is no change at all
    assert apply_plan(redis, {}, KEYS, NOW).removed == ["hourly"]  # and still the sync's to remove
