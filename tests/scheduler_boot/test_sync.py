"""Reconcile: add new, keep unchanged untouched, replace changed, remove undeclared — only ours;
expire past one-offs; rewrite pickled templates."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq.job import Job
from rq_scheduler import Scheduler

from app.config import PROJECT_ROOT
from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.serializer import JSONJob
from jobs.system import health_check
from scheduler_boot.sync import apply_plan, compute_plan
from tests.scheduler_boot.helpers import schedule_from

NOW = datetime(2026, 11, 22, 4, 0, 7, tzinfo=UTC)
KEYS = Keys()

BASE = """
[schedules.hourly]
func = "jobs.system.health_check"
cron = "0 * * * *"
[schedules.halfhour]
func = "jobs.system.health_check"
every = "30m"
"""


def registered(redis: Redis) -> dict[str, float]:
    return {m.decode(): s for m, s in redis.zrange(RQ_SCHEDULER_SET, 0, -1, withscores=True)}


def test_new_schedules_are_added_with_their_next_fire_time(redis: Redis) -> None:
    plan = apply_plan(redis, schedule_from(BASE, NOW).specs, KEYS, NOW)
    assert plan.added == ["halfhour", "hourly"]
    assert registered(redis) == {
        "cronwork-hourly": datetime(2026, 11, 22, 5, tzinfo=UTC).timestamp(),
        "cronwork-halfhour": datetime(2026, 11, 22, 4, 30, tzinfo=UTC).timestamp(),
    }
    definition = json.loads(redis.hget(KEYS.definitions, "hourly"))
    assert definition["spec"]["func"] == "jobs.system.health_check"


def test_unchanged_schedule_is_untouched_and_keeps_its_next_fire(redis: Redis) -> None:
    specs = schedule_from(BASE, NOW).specs
    apply_plan(redis, specs, KEYS, NOW)
    redis.zadd(RQ_SCHEDULER_SET, {"cronwork-hourly": 123.0})  # as if the loop had advanced it
    plan = apply_plan(redis, specs, KEYS, NOW + timedelta(hours=3))
    assert not plan.has_changes and plan.unchanged == ["halfhour", "hourly"]
    assert registered(redis)["cronwork-hourly"] == 123.0
    assert plan.render().startswith("no changes")


def test_changed_schedule_is_replaced_and_rescheduled(redis: Redis) -> None:
    apply_plan(redis, schedule_from(BASE, NOW).specs, KEYS, NOW)
    changed = BASE.replace('cron = "0 * * * *"', 'cron = "15 * * * *"')
    plan = apply_plan(redis, schedule_from(changed, NOW).specs, KEYS, NOW)
    assert plan.updated == ["hourly"] and plan.unchanged == ["halfhour"]
    assert registered(redis)["cronwork-hourly"] == datetime(2026, 11, 22, 4, 15, tzinfo=UTC).timestamp()


def test_undeclared_and_disabled_schedules_are_removed(redis: Redis) -> None:
    apply_plan(redis, schedule_from(BASE, NOW).specs, KEYS, NOW)
    only_hourly = BASE.replace('every = "30m"', 'every = "30m"\nenabled = false')
    plan = apply_plan(redis, schedule_from(only_hourly, NOW).specs, KEYS, NOW)
    assert plan.removed == ["halfhour"]
    assert set(registered(redis)) == {"cronwork-hourly"}
    assert not redis.exists("rq:job:cronwork-halfhour")
    assert redis.hkeys(KEYS.definitions) == [b"hourly"]


def test_foreign_scheduled_jobs_survive(redis: Redis) -> None:
    foreign = Scheduler(connection=redis).enqueue_at(datetime(2030, 1, 1), health_check)
    apply_plan(redis, schedule_from(BASE, NOW).specs, KEYS, NOW)
    apply_plan(redis, schedule_from(BASE.replace("hourly", "other"), NOW).specs, KEYS, NOW)
    assert foreign.id in registered(redis)
    assert redis.exists(f"rq:job:{foreign.id}")


def test_operator_pause_survives_a_resync(redis: Redis) -> None:
    apply_plan(redis, schedule_from(BASE, NOW).specs, KEYS, NOW)
    redis.hset(KEYS.paused, "hourly", json.dumps({"reason": "maintenance"}))
    changed = BASE.replace('cron = "0 * * * *"', 'cron = "15 * * * *"')
    apply_plan(redis, schedule_from(changed, NOW).specs, KEYS, NOW)
    assert json.loads(redis.hget(KEYS.paused, "hourly")) == {"reason": "maintenance"}


def test_template_whose_job_hash_vanished_is_re_registered(redis: Redis) -> None:
    specs = schedule_from(BASE, NOW).specs
    apply_plan(redis, specs, KEYS, NOW)
    redis.delete("rq:job:cronwork-hourly")
    assert compute_plan(redis, specs, KEYS, NOW).updated == ["hourly"]
    apply_plan(redis, specs, KEYS, NOW)
    assert redis.exists("rq:job:cronwork-hourly")


def test_ten_concurrent_boots_leave_exactly_the_declared_set(redis: Redis, redis_url: str) -> None:
    specs = schedule_from(BASE, NOW).specs
    errors: list[BaseException] = []

    def boot() -> None:
        client = Redis.from_url(redis_url)
        try:
            apply_plan(client, specs, KEYS, NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=boot) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(registered(redis)) == {"cronwork-hourly", "cronwork-halfhour"}
    assert redis.hlen(KEYS.definitions) == 2


def test_dry_run_and_broken_file_write_nothing(
    redis: Redis, process_env: dict[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BASE)
    broken = tmp_path / "broken.toml"
    broken.write_text(BASE + '\n[schedules.bad]\nfunc = "os.system"\ncron = "0 * * * *"\n')
    run = [sys.executable, "-m", "scheduler_boot"]

    dry = subprocess.run(
        [*run, "--dry-run", "--file", str(good)],
        cwd=PROJECT_ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    assert "+ hourly" in dry.stdout and "2 added" in dry.stdout
    assert redis.dbsize() == 0

    bad = subprocess.run(
        [*run, "--sync-only", "--file", str(broken)],
        cwd=PROJECT_ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "broken.toml: schedules.bad.func: 'os.system' is outside the jobs package"
    assert redis.dbsize() == 0


ONE_OFF = """
[schedules.backfill]
func = "jobs.system.health_check"
timezone = "UTC"
at = 2026-11-22T04:05:00
"""


def test_a_past_one_off_is_expired_never_registered_and_its_leftovers_removed(redis: Redis) -> None:
    """Issue 10: the same file parses the same way at any time; "past" is the plan's outcome."""
    specs = schedule_from(ONE_OFF, NOW).specs
    assert apply_plan(redis, specs, KEYS, NOW).added == ["backfill"]
    later = NOW + timedelta(hours=1)
    plan = compute_plan(redis, specs, KEYS, later)
    assert (plan.added, plan.updated, plan.removed, list(plan.expired)) == ([], [], ["backfill"], ["backfill"])
    assert "never ran here; remove it or set enabled = false" in plan.render()
    apply_plan(redis, specs, KEYS, later)
    assert registered(redis) == {} and not redis.exists("rq:job:cronwork-backfill")
    assert redis.hlen(KEYS.definitions) == 0
    again = apply_plan(redis, specs, KEYS, later)
    assert not again.has_changes and again.expired
    assert again.render().splitlines()[0] == "no changes (0 schedules unchanged, 1 expired)"


def test_an_expired_one_off_the_scheduler_ran_says_so(redis: Redis) -> None:
    tick = int(datetime(2026, 11, 22, 4, 5, tzinfo=UTC).timestamp())
    store.record_fired_oneoff(redis, KEYS, "backfill", tick)
    plan = compute_plan(redis, schedule_from(ONE_OFF, NOW).specs, KEYS, NOW + timedelta(days=1))
    assert not plan.has_changes
    assert "the scheduler handled it at that tick" in plan.expired["backfill"]


def test_a_pickled_template_left_by_an_older_version_is_rewritten_as_json(redis: Redis) -> None:
    """Point 5: an upgrade leaves no pickle in Cronwork's templates."""
    specs = schedule_from(BASE, NOW).specs
    apply_plan(redis, specs, KEYS, NOW)
    # What a pickle-based version registered: rq's default serializer, same id and meta.
    redis.delete("rq:job:cronwork-hourly")
    Job.create(
        health_check, id="cronwork-hourly", connection=redis, meta={"cronwork_schedule": "hourly"}
    ).save()
    assert redis.hget("rq:job:cronwork-hourly", "meta").startswith(b"\x80")  # a pickle
    assert compute_plan(redis, specs, KEYS, NOW).updated == ["hourly"]

    plan = apply_plan(redis, specs, KEYS, NOW)
    assert plan.updated == ["hourly"] and plan.unchanged == ["halfhour"]
    template = JSONJob.fetch("cronwork-hourly", connection=redis)
    assert template.func_name == "jobs.system.health_check"
    assert json.loads(redis.hget("rq:job:cronwork-hourly", "meta"))["cronwork_schedule"] == "hourly"
    assert not compute_plan(redis, specs, KEYS, NOW).has_changes
