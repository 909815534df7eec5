"""An update that leaves a schedule's timing alone keeps its place in the set (issue 11).

Adding `keep_runs` to the definition changed every definition hash: the first sync after the
upgrade reports every template `updated`. That must not move a tick already due.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from redis import Redis

from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from scheduler_boot.sync import apply_plan, compute_plan
from tests.scheduler_boot.helpers import schedule_from
from tests.scheduler_boot.test_sync import BASE, NOW, registered

KEYS = Keys()


def register_as_before_keep_runs(redis: Redis) -> None:
    """Rewrite every definition as a version without keep_runs wrote it (its own hash)."""
    for name, definition in store.definitions(redis, KEYS).items():
        old = {k: v for k, v in definition.spec.items() if k != "keep_runs"}
        canonical = json.dumps(old, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        redis.hset(KEYS.definitions, name, store.Definition(hash=digest, spec=old).encode())


def test_an_upgrade_that_only_changes_hashes_keeps_every_due_tick(redis: Redis) -> None:
    specs = schedule_from(BASE, NOW).specs
    apply_plan(redis, specs, KEYS, NOW)
    register_as_before_keep_runs(redis)
    # The scheduler was stopped for the upgrade: the 04:00 tick of `hourly` is due, unhandled.
    due = datetime(2026, 11, 22, 4, tzinfo=UTC).timestamp()
    redis.zadd(RQ_SCHEDULER_SET, {"cronwork-hourly": due})
    before = registered(redis)

    later = NOW + timedelta(minutes=5)
    plan = apply_plan(redis, specs, KEYS, later)
    assert plan.updated == ["halfhour", "hourly"] and plan.retimed == []
    assert registered(redis) == before  # the due tick stays due for the misfire policy
    assert store.definitions(redis, KEYS)["hourly"].spec["keep_runs"] == 100
    assert not compute_plan(redis, specs, KEYS, later).has_changes


def test_a_changed_trigger_or_zone_is_retimed(redis: Redis) -> None:
    apply_plan(redis, schedule_from(BASE, NOW).specs, KEYS, NOW)
    changed = BASE.replace('every = "30m"', 'every = "30m"\ntimezone = "UTC"').replace(
        'cron = "0 * * * *"', 'cron = "0 * * * *"\nkeep_runs = 5'
    )
    plan = apply_plan(redis, schedule_from(changed, NOW).specs, KEYS, NOW)
    assert plan.updated == ["halfhour", "hourly"] and plan.retimed == ["halfhour"]


def test_a_template_missing_from_the_set_is_retimed(redis: Redis) -> None:
    specs = schedule_from(BASE, NOW).specs
    apply_plan(redis, specs, KEYS, NOW)
    redis.zrem(RQ_SCHEDULER_SET, "cronwork-hourly")
    plan = apply_plan(redis, specs, KEYS, NOW)
    assert plan.updated == plan.retimed == ["hourly"]
    assert registered(redis)["cronwork-hourly"] == datetime(2026, 11, 22, 5, tzinfo=UTC).timestamp()
