"""Backfill (issue 14): each tick of a past range once, with its own scheduled_for, bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis

from app.services.backfill import backfill
from app.services.schedules import RateLimited, ScheduleService
from cronwork.backfill import BackfillError
from cronwork.ledger import Ledger
from cronwork.loader import load_schedule
from cronwork.serializer import JSONJob, json_queue
from cronwork.spec import ScheduleSpec
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan
from tests.app.conftest import KEYS, bearer, log_in
from tests.conftest import Processes, wait_until
from tests.scheduler_boot.test_scheduler import Clock

HOURLY = """
[schedules.hourly]
func = "jobs.system.health_check"
cron = "0 * * * *"
timezone = "Asia/Shanghai"
timeout = "20s"
overlap = "allow"
"""
NOW = datetime(2026, 11, 30, 4, 30, tzinfo=UTC)  # 12:30 in Shanghai


def registered(redis: Redis, tmp_path: Path, text: str = HOURLY) -> ScheduleSpec:
    path = tmp_path / "schedule.toml"
    path.write_text(text)
    specs = load_schedule(path).specs
    apply_plan(redis, specs, KEYS, datetime.now(UTC))
    return specs["hourly"]


def run(spec: ScheduleSpec, start: str, end: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return backfill(spec, start, end, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


@pytest.mark.usefixtures("app")
def test_each_tick_is_enqueued_once_with_its_own_scheduled_for(redis: Redis, tmp_path: Path) -> None:
    spec = registered(redis, tmp_path)
    # Wall times of the schedule's zone: 00:00 to 05:00 in Shanghai is six hourly ticks.
    result = run(spec, "2026-11-30T00:00:00", "2026-11-30T05:00:00")
    assert [datetime.fromtimestamp(t, UTC) for t in result.ticks] == [
        datetime(2026, 11, 29, 16, tzinfo=UTC) + timedelta(hours=h) for h in range(6)
    ]
    assert len(result.enqueued) == 6 and result.taken == {} and result.rate_limited == {}
    queue = json_queue("default", redis)
    assert queue.job_ids == result.enqueued
    for tick, job_id in zip(result.ticks, result.enqueued, strict=True):
        job = JSONJob.fetch(job_id, connection=redis)
        scheduled_for = datetime.fromtimestamp(tick, UTC).isoformat()
        assert job.kwargs == {"scheduled_for": scheduled_for}
        assert job.meta["trigger"] == "backfill" and job.meta["tick"] == tick
    records = Ledger(redis, KEYS).history("hourly")
    assert {(r["state"], r["trigger"]) for r in records} == {("enqueued", "backfill")}

    # The same range again, and a wider one: only the ticks nothing has are enqueued.
    again = run(spec, "2026-11-30T00:00:00+08:00", "2026-11-30T05:00:00+08:00")
    assert again.enqueued == [] and set(again.taken) == set(result.ticks)
    wider = run(spec, "2026-11-29T23:00:00", "2026-11-30T05:30:00")
    assert len(wider.enqueued) == 1 and queue.count == 7


@pytest.mark.usefixtures("app")
def test_ticks_the_scheduler_handled_are_left_but_missed_and_paused_ones_run(
    redis: Redis, tmp_path: Path
) -> None:
    spec = registered(redis, tmp_path)
    ledger = Ledger(redis, KEYS)
    base = int(datetime(2026, 11, 30, 0, tzinfo=UTC).timestamp())  # 08:00 Shanghai
    for hour, state in enumerate(["succeeded", "failed", "missed", "paused", "enqueued"]):
        ledger.put("hourly", base + 3600 * hour, {"state": state})

    dry = run(spec, "2026-11-30T08:00:00", "2026-11-30T12:00:00", dry_run=True)
    assert dry.dry_run and dry.enqueued == [] and json_queue("default", redis).count == 0
    assert dry.taken == {base: "succeeded", base + 3600: "failed", base + 4 * 3600: "enqueued"}
    assert dry.as_dict()["ticks"][0] == "2026-11-30T00:00:00+00:00"

    done = run(spec, "2026-11-30T08:00:00", "2026-11-30T12:00:00")
    assert done.taken == dry.taken
    assert done.enqueued == [KEYS.run_id("hourly", base + 3600 * h) for h in (2, 3)]


@pytest.mark.usefixtures("app")
def test_bad_ranges_are_refused_in_one_line_and_nothing_is_enqueued(redis: Redis, tmp_path: Path) -> None:
    spec = registered(redis, tmp_path)
    cases = {
        ("2026-11-30T05:00:00", "2026-11-30T00:00:00"): "is before 'from'",
        ("2026-11-30T00:00:00", "2026-12-01T00:00:00"): "is in the future",
        ("yesterday", "2026-11-30T00:00:00"): "'from' is not an ISO-8601 time",
        ("", "2026-11-30T00:00:00"): "'from' is required",
        ("2026-01-01T00:00:00", "2026-11-30T00:00:00"): "more than 1000 ticks",
    }
    for (start, end), message in cases.items():
        with pytest.raises(BackfillError, match=message):
            run(spec, start, end, max_ticks=1000)
    assert json_queue("default", redis).count == 0 and Ledger(redis, KEYS).history("hourly") == []
    # Exactly the maximum is allowed.
    assert len(run(spec, "2026-11-28T13:00:00", "2026-11-30T12:00:00", max_ticks=48).enqueued) == 48


@pytest.mark.usefixtures("app")
def test_backfill_respects_the_rate_limit(redis: Redis, tmp_path: Path) -> None:
    spec = registered(redis, tmp_path, HOURLY + 'rate_limit = "3/1h"\n')
    result = run(spec, "2026-11-30T00:00:00", "2026-11-30T05:00:00")
    assert len(result.enqueued) == 3 and len(result.rate_limited) == 3
    states = [r["state"] for r in sorted(Ledger(redis, KEYS).history("hourly"), key=lambda r: r["tick"])]
    assert states == ["enqueued"] * 3 + ["rate_limited"] * 3
    # Rate-limited ticks never ran: a later backfill may take them (here still refused).
    again = run(spec, "2026-11-30T00:00:00", "2026-11-30T05:00:00")
    assert again.enqueued == [] and len(again.taken) == 3 and len(again.rate_limited) == 3
    assert result.as_dict()["retry_at"] is not None


def test_backfilled_runs_execute_on_a_real_worker_with_their_ticks(
    app: Flask, redis: Redis, tmp_path: Path, processes: Processes
) -> None:
    spec = registered(redis, tmp_path)
    with app.app_context():
        result = run(spec, "2026-11-30T00:00:00", "2026-11-30T03:00:00")
    worker = processes.start("-m", "jobs.worker", "--burst", name="worker")
    assert worker.wait(60) == 0, processes.output(worker)
    records = {r["tick"]: r for r in Ledger(redis, KEYS).history("hourly")}
    assert sorted(records) == result.ticks
    for tick, record in records.items():
        assert (record["state"], record["trigger"]) == ("succeeded", "backfill")
        assert record["job_id"] == KEYS.run_id("hourly", tick)
        # health_check measures its lag from the scheduled_for it was given: its own tick.
        started = datetime.fromisoformat(record["started_at"]).timestamp()
        assert abs(started - record["result"]["lag_seconds"] - tick) < 5
    wait_until(lambda: json_queue("default", redis).count == 0, timeout=5)


RATE_LIMITED_TOML = HOURLY.replace("[schedules.hourly]", "[schedules.limited]") + 'rate_limit = "5/1m"\n'


def test_the_sixth_run_now_within_a_minute_under_5_per_minute_gets_429(
    ops_app: Flask, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "limited.toml"
    path.write_text(RATE_LIMITED_TOML)
    ops_app.config["SCHEDULE_FILE"] = str(path)
    apply_plan(redis, load_schedule(path).specs, KEYS, datetime.now(UTC))
    client = ops_app.test_client()
    # Five presses through the service, each on its own second (two presses in one second are
    # one run anyway); the window counts them by Redis's clock, all within this minute.
    presses = iter(range(5))
    base = datetime.now(UTC) - timedelta(seconds=30)
    service = ScheduleService(redis, KEYS, path, clock=lambda: base + timedelta(seconds=next(presses)))
    runs = [service.run_now("limited") for _ in range(5)]
    refused = client.post("/api/schedules/limited/run", headers=bearer())
    assert refused.status_code == 429
    body = refused.get_json()
    retry_at = datetime.fromisoformat(body["retry_at"])
    assert timedelta(seconds=55) <= retry_at - datetime.now(UTC) <= timedelta(seconds=60)
    assert body["error"].startswith("schedule 'limited' is rate limited (5/1m): the next run is allowed at")
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert len({run.job_id for run in runs}) == 5
    assert json_queue("default", redis).count == 5
    states = [r["state"] for r in Ledger(redis, KEYS).history("limited")]
    assert sorted(states) == ["enqueued"] * 5 + ["rate_limited"]
    assert redis.hget(KEYS.run_stats, "limited:runs:rate_limited") == b"1"
    # The refusal is in the audit trail, with its reason.
    trail = client.get("/api/audit?schedule=limited", headers=bearer()).get_json()["entries"]
    assert trail[0]["outcome"] == "refused" and "rate limited" in trail[0]["detail"]


def test_backfill_over_the_api_and_the_cli(ops_app: Flask, redis: Redis, tmp_path: Path) -> None:
    path = tmp_path / "hourly.toml"
    path.write_text(HOURLY)
    ops_app.config["SCHEDULE_FILE"] = str(path)
    apply_plan(redis, load_schedule(path).specs, KEYS, datetime.now(UTC))
    client = ops_app.test_client()
    start, end = "2026-11-29T00:00:00+08:00", "2026-11-29T05:00:00+08:00"

    dry = client.post(
        "/api/schedules/hourly/backfill", headers=bearer(), json={"from": start, "to": end, "dry_run": True}
    )
    assert dry.status_code == 200 and dry.get_json()["count"] == 6 and len(dry.get_json()["ticks"]) == 6
    assert json_queue("default", redis).count == 0

    done = client.post("/api/schedules/hourly/backfill", headers=bearer(), json={"from": start, "to": end})
    assert done.status_code == 202
    assert {k: done.get_json()[k] for k in ("count", "enqueued", "already")} == {
        "count": 6,
        "enqueued": 6,
        "already": 0,
    }

    out = ops_app.test_cli_runner().invoke(
        args=["schedules", "backfill", "hourly", "--from", start, "--to", end, "--dry-run"]
    )
    assert out.exit_code == 0, out.output
    assert out.output.count("already enqueued") == 6 and "6 ticks, dry run, 6 already had" in out.output
    again = ops_app.test_cli_runner().invoke(
        args=["schedules", "backfill", "hourly", "--from", start, "--to", end]
    )
    assert again.exit_code == 0 and "6 ticks, 0 enqueued, 6 already had" in again.output
    assert json_queue("default", redis).count == 6

    for body, status, message in [
        ({"from": start}, 400, "'to' is required"),
        ({"from": start, "to": "2999-01-01T00:00:00"}, 400, "is in the future"),
        ({"from": start, "to": end, "extra": 1}, 400, "unknown field(s): extra"),
        ({"from": start, "to": end, "dry_run": "yes"}, 400, "dry_run must be true or false"),
    ]:
        answer = client.post("/api/schedules/hourly/backfill", headers=bearer(), json=body)
        assert (answer.status_code, message in answer.get_json()["error"]) == (status, True), (
            answer.get_json()
        )
    assert client.post("/api/schedules/nope/backfill", headers=bearer(), json={}).status_code == 404
    ops_app.config["BACKFILL_MAX_TICKS"] = 5  # the configured maximum (BACKFILL_MAX_TICKS)
    over = client.post("/api/schedules/hourly/backfill", headers=bearer(), json={"from": start, "to": end})
    assert over.status_code == 400 and "more than 5 ticks" in over.get_json()["error"]
    bad = ops_app.test_cli_runner().invoke(
        args=["schedules", "backfill", "hourly", "--from", "x", "--to", end]
    )
    assert bad.exit_code == 1 and bad.output.strip() == "Error: 'from' is not an ISO-8601 time: 'x'"
    actions = [
        e["action"] for e in client.get("/api/audit?schedule=hourly", headers=bearer()).get_json()["entries"]
    ]
    assert actions.count("backfill") == 10


def test_the_schedule_page_shows_rate_limit_jitter_and_a_refused_run(
    ops_app: Flask, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "limited.toml"
    path.write_text(RATE_LIMITED_TOML.replace('"5/1m"', '"1/1m"') + 'jitter = "5m"\n')
    ops_app.config["SCHEDULE_FILE"] = str(path)
    apply_plan(redis, load_schedule(path).specs, KEYS, datetime.now(UTC))
    presses = iter(range(2))
    base = datetime.now(UTC) - timedelta(seconds=30)
    service = ScheduleService(redis, KEYS, path, clock=lambda: base + timedelta(seconds=next(presses)))
    service.run_now("limited")
    with pytest.raises(RateLimited):
        service.run_now("limited")
    client = ops_app.test_client()
    log_in(client)
    page = client.get("/schedules/limited").get_data(as_text=True)
    assert "rate limit 1/1m" in page and "jitter up to 5m" in page
    assert 'data-state="rate_limited"' in page and "not enqueued: rate limit; next run allowed" in page


@pytest.mark.usefixtures("app")
def test_ticks_the_scheduler_ran_are_not_run_again_after_their_records_were_trimmed(
    redis: Redis, tmp_path: Path
) -> None:
    text = HOURLY.replace('cron = "0 * * * *"', 'every = "1m"') + "keep_runs = 3\n"
    path = tmp_path / "schedule.toml"
    path.write_text(text)
    spec = load_schedule(path).specs["hourly"]
    ledger = Ledger(redis, KEYS)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    apply_plan(redis, {"hourly": spec}, KEYS, start)  # as if synced half an hour ago
    clock = Clock(start)
    scheduler = CronworkScheduler(redis, KEYS, clock=clock)
    handled = []
    for minute in range(1, 9):  # the scheduler handles 8 ticks; each run succeeds
        clock.now = start + timedelta(minutes=minute, milliseconds=5)
        [job_id] = scheduler.enqueue_jobs()
        tick = int(job_id.rsplit("-", 1)[1])
        ledger.put("hourly", tick, {"state": "succeeded"})
        handled.append(tick)
    kept = {r["tick"] for r in ledger.history("hourly")}
    assert len(kept) < len(handled)  # the dispatch trimmed the older records

    before = start.astimezone(spec.zone).replace(tzinfo=None)
    result = backfill(
        spec,
        before.isoformat(),
        (before + timedelta(minutes=8)).isoformat(),
        clock=lambda: NOW + timedelta(days=1),
    )
    assert result.taken == {tick: "succeeded" if tick in kept else "trimmed" for tick in handled}
    # The one tick before the schedule's first handled tick never ran: it is enqueued.
    assert result.enqueued == [KEYS.run_id("hourly", int(start.timestamp()))]


@pytest.mark.usefixtures("app")
def test_a_scheduled_tick_skipped_for_overlap_can_be_backfilled(redis: Redis, tmp_path: Path) -> None:
    spec = registered(redis, tmp_path)
    tick = int(datetime(2026, 11, 30, 0, tzinfo=UTC).timestamp())
    Ledger(redis, KEYS).put("hourly", tick, {"state": "skipped_overlap"})
    result = run(spec, "2026-11-30T08:00:00", "2026-11-30T08:00:00")
    assert result.enqueued == [KEYS.run_id("hourly", tick)]


@pytest.mark.usefixtures("app")
def test_times_out_of_range_are_refused_in_one_line(redis: Redis, tmp_path: Path) -> None:
    spec = registered(redis, tmp_path)
    with pytest.raises(BackfillError, match="'from' is out of range: '0001-01-01T00:00:00'"):
        run(spec, "0001-01-01T00:00:00", "2026-11-30T00:00:00")
