"""API contract for /api/schedules…: shapes, bad input, unknown names, oversize reasons."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from app.services.schedules import MAX_REASON, NotRunnable, ScheduleService
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.ledger import Ledger
from cronwork.serializer import JSONJob, json_queue
from scheduler_boot.scheduler import CronworkScheduler
from tests.app.conftest import KEYS, bearer, seed_ledger
from tests.conftest import Processes, wait_until

pytestmark = pytest.mark.usefixtures("registered")
AUTH = bearer()


def get(client: FlaskClient, path: str) -> tuple[int, dict]:
    response = client.get(path, headers=AUTH)
    return response.status_code, response.get_json()


def post(client: FlaskClient, path: str, body: object = None, **kwargs: object) -> tuple[int, dict]:
    if body is not None:
        kwargs["json"] = body
    response = client.post(path, headers=AUTH, **kwargs)  # type: ignore[arg-type]
    return response.status_code, response.get_json()


def test_list_shows_trigger_zone_next_fires_and_state(client: FlaskClient, redis: Redis) -> None:
    seed_ledger(redis, "hc", ["succeeded", "failed", "failed"])
    redis.set(KEYS.failure_streak("hc"), 2)
    status, body = get(client, "/api/schedules")
    assert status == 200
    by_name = {s["name"]: s for s in body["schedules"]}
    assert sorted(by_name) == ["backfill", "hc", "nightly"]

    hc = by_name["hc"]
    assert hc["trigger"] == "every 30 minutes"
    assert hc["timezone"] == "Asia/Shanghai"
    assert (hc["enabled"], hc["registered"], hc["paused"]) == (True, True, False)
    times = [datetime.fromisoformat(t) for t in hc["next_fire_times"]]
    assert len(times) == 5 and times == sorted(set(times))
    assert times[0].timestamp() == redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("hc"))
    assert all((b - a).total_seconds() == 1800 for a, b in zip(times, times[1:], strict=False))
    assert hc["last_run"]["state"] == "failed"
    assert hc["last_run"]["duration"] == 1.5
    assert hc["consecutive_failures"] == 2

    nightly = by_name["nightly"]
    assert nightly["trigger"] == "at 02:00"
    local = [
        datetime.fromisoformat(t).astimezone(ZoneInfo("Asia/Shanghai")) for t in nightly["next_fire_times"]
    ]
    assert {(t.hour, t.minute) for t in local} == {(2, 0)}
    assert nightly["last_run"] is None

    backfill = by_name["backfill"]
    assert (backfill["enabled"], backfill["registered"], backfill["next_fire_times"]) == (False, False, [])


def test_an_invalid_schedule_file_falls_back_to_the_registered_schedules(
    client: FlaskClient, schedule_file: Path
) -> None:
    schedule_file.write_text("[schedules.broken\n")
    os.utime(schedule_file, ns=(1, 1))  # a new version even within one mtime tick
    status, body = get(client, "/api/schedules")
    assert status == 200
    assert sorted(s["name"] for s in body["schedules"]) == ["hc", "nightly"]


def test_one_schedule_and_unknown_names(client: FlaskClient) -> None:
    assert get(client, "/api/schedules/hc")[1]["name"] == "hc"
    for path in ("/api/schedules/nope", "/api/schedules/nope/next", "/api/schedules/nope/history"):
        assert get(client, path) == (404, {"error": "unknown schedule 'nope'"})
    for path in ("/api/schedules/nope/run", "/api/schedules/nope/resume"):
        assert post(client, path) == (404, {"error": "unknown schedule 'nope'"})
    assert post(client, "/api/schedules/nope/pause", {"reason": "x"})[0] == 404


def test_unmatched_routes_and_methods_answer_json(client: FlaskClient) -> None:
    status, body = get(client, "/api/no-such-route")
    assert status == 404 and body["error"]
    response = client.get("/api/schedules/hc/run", headers=AUTH)
    assert response.status_code == 405 and response.get_json()["error"]


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 200), ("?count=3", 200), ("?count=0", 400), ("?count=abc", 400), ("?count=101", 400)],
)
def test_next_fire_times_count(client: FlaskClient, query: str, status: int) -> None:
    code, body = get(client, f"/api/schedules/nightly/next{query}")
    assert code == status, body
    if status == 200:
        assert len(body["next_fire_times"]) == (3 if query else 5)
    else:
        assert "count" in body["error"]


def test_history_is_newest_first_with_limit(client: FlaskClient, redis: Redis) -> None:
    ticks = seed_ledger(redis, "hc", ["succeeded", "missed", "timed_out"])
    status, body = get(client, "/api/schedules/hc/history?limit=2")
    assert status == 200
    assert [r["tick"] for r in body["runs"]] == ticks[::-1][:2]
    assert body["runs"][0]["state"] == "timed_out" and body["runs"][0]["error"] == f"boom at {ticks[2]}"
    for bad in ("0", "abc", "501", "-1"):
        code, err = get(client, f"/api/schedules/hc/history?limit={bad}")
        assert code == 400 and "limit" in err["error"]


def test_history_of_a_schedule_no_longer_declared_is_still_readable(
    client: FlaskClient, redis: Redis
) -> None:
    seed_ledger(redis, "retired", ["succeeded"])
    status, body = get(client, "/api/schedules/retired/history")
    assert status == 200 and len(body["runs"]) == 1


def test_run_enqueues_a_manual_run_recorded_in_the_ledger(client: FlaskClient, redis: Redis) -> None:
    status, body = post(client, "/api/schedules/hc/run")
    assert status == 202
    job_id, tick = body["job_id"], body["tick"]
    assert job_id == KEYS.run_id("hc", tick) and body["queue"] == "default"
    assert job_id in json_queue("default", redis).job_ids
    job = JSONJob.fetch(job_id, connection=redis)
    assert job.meta["trigger"] == "manual" and job.meta["cronwork_schedule"] == "hc"
    assert job.meta["overlap"] == "skip"  # the worker applies the overlap policy to manual runs too
    record = Ledger(redis, KEYS).history("hc", 1)[0]
    assert (record["tick"], record["state"], record["trigger"], record["job_id"]) == (
        tick, "enqueued", "manual", job_id
    )  # fmt: skip


def test_run_refuses_disabled_schedules_and_a_second_run_in_the_same_second(
    ops_app: Flask, client: FlaskClient, redis: Redis
) -> None:
    status, body = post(client, "/api/schedules/backfill/run")
    assert status == 409 and "not registered" in body["error"]
    now = datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    service = ScheduleService(redis, KEYS, ops_app.config["SCHEDULE_FILE"], clock=lambda: now)
    service.run_now("nightly")
    with pytest.raises(NotRunnable, match="exists already"):
        service.run_now("nightly")
    assert len(json_queue("default", redis)) == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid JSON body"),
        ({"data": "[1, 2]", "content_type": "application/json"}, 400, "must be an object"),
        ({"data": "reason=x", "content_type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"json": {"reason": "x", "force": True}}, 400, "unknown field(s): force"),
        ({"data": "{}", "content_type": "application/json"}, 400, "reason is required"),
        ({"json": {"reason": ""}}, 400, "reason is required"),
        ({"json": {"reason": "   "}}, 400, "reason is required"),
        ({"json": {"reason": 42}}, 400, "reason is required"),
        ({"json": {"reason": "a" * (MAX_REASON + 1)}}, 400, "too long"),
        ({"json": {"reason": "line one\nline two"}}, 400, "one line"),
        ({"data": json.dumps({"reason": "x" * 20000}), "content_type": "application/json"}, 413, "over"),
    ],
)
def test_pause_refuses_bad_input(
    client: FlaskClient, redis: Redis, kwargs: dict, status: int, error: str
) -> None:
    code, body = post(client, "/api/schedules/hc/pause", **kwargs)
    assert code == status, body
    assert error in body["error"]
    assert not redis.hexists(KEYS.paused, "hc")


def test_bad_json_on_run_and_resume_is_refused(client: FlaskClient, redis: Redis) -> None:
    for path in ("/api/schedules/hc/run", "/api/schedules/hc/resume", "/api/failed/requeue"):
        code, body = post(client, path, data="{", content_type="application/json")
        assert (code, body) == (400, {"error": "invalid JSON body"})
    assert post(client, "/api/schedules/hc/run", {"now": True}) == (400, {"error": "unknown field(s): now"})
    assert len(json_queue("default", redis)) == 0


def test_pause_and_resume_round_trip(client: FlaskClient, redis: Redis) -> None:
    reason = "r" * MAX_REASON  # the longest accepted
    status, body = post(client, "/api/schedules/hc/pause", {"reason": reason})
    assert status == 200 and body["paused"] and body["reason"] == reason
    stored = json.loads(redis.hget(KEYS.paused, "hc"))
    assert stored == {"reason": reason, "since": body["since"]}
    since = body["since"]
    assert post(client, "/api/schedules/hc/pause", {"reason": "  still broken  "})[1]["since"] == since
    listed = {s["name"]: s for s in get(client, "/api/schedules")[1]["schedules"]}["hc"]
    assert (listed["paused"], listed["paused_reason"], listed["paused_since"]) == (
        True,
        "still broken",
        since,
    )

    assert post(client, "/api/schedules/hc/resume") == (
        200,
        {"schedule": "hc", "paused": False, "was_paused": True},
    )
    assert post(client, "/api/schedules/hc/resume")[1]["was_paused"] is False
    assert not redis.hexists(KEYS.paused, "hc")


def test_a_disabled_schedule_can_be_paused(client: FlaskClient) -> None:
    assert post(client, "/api/schedules/backfill/pause", {"reason": "keep off"})[0] == 200


def test_scheduler_records_ticks_of_a_schedule_paused_through_the_api(
    client: FlaskClient, redis: Redis
) -> None:
    post(client, "/api/schedules/hc/pause", {"reason": "maintenance"})
    # A tick that Redis's clock has reached (the scheduler never handles one ahead of it).
    seconds, _ = redis.time()
    due = float(seconds - 1)
    redis.zadd(RQ_SCHEDULER_SET, {KEYS.template_id("hc"): due}, xx=True)
    scheduler = CronworkScheduler(redis, KEYS, clock=lambda: due + 0.5)
    assert scheduler.enqueue_jobs() == []
    assert Ledger(redis, KEYS).history("hc", 1)[0]["state"] == "paused"


@pytest.mark.slow
def test_manual_run_is_executed_by_a_worker(
    client: FlaskClient, redis: Redis, processes: Processes, process_env: dict[str, str]
) -> None:
    job_id = post(client, "/api/schedules/nightly/run")[1]["job_id"]
    worker = processes.start("-m", "jobs.worker", "default", "--burst", name="worker")
    assert worker.wait(60) == 0, processes.output(worker)
    wait_until(
        lambda: get(client, "/api/schedules/nightly/history")[1]["runs"][0]["state"] == "succeeded", 10
    )
    run = get(client, "/api/schedules/nightly/history")[1]["runs"][0]
    assert (run["job_id"], run["trigger"]) == (job_id, "manual")
    assert get(client, "/api/schedules/nightly")[1]["last_run"]["state"] == "succeeded"
