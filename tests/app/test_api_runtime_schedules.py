"""Runtime schedules through the API: codes, validation as schedule.toml's, names, audit, source."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.ledger import Ledger
from cronwork.store import ScheduleSource
from tests.app.conftest import KEYS, bearer, seed_ledger

pytestmark = pytest.mark.usefixtures("registered")
AUTH = bearer()
ADHOC = {"name": "adhoc", "func": "jobs.system.health_check", "every": "10m", "description": "one-off check"}


def call(client: FlaskClient, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    if body is not None:
        kwargs["json"] = body
    response = client.open(path, method=method, headers=AUTH, **kwargs)
    return response.status_code, response.get_json(silent=True)


def audit_entries(client: FlaskClient, name: str) -> list[dict[str, Any]]:
    return call(client, "GET", f"/api/audit?schedule={name}")[1]["entries"]


def test_add_update_delete_round_trip(client: FlaskClient, redis: Redis) -> None:
    status, body = call(client, "POST", "/api/schedules", ADHOC)
    assert status == 201, body
    assert (body["name"], body["source"], body["registered"], body["clash"]) == (
        "adhoc",
        "runtime",
        True,
        False,
    )
    assert (
        body["trigger"] == "every 10 minutes" and body["timezone"] == "Asia/Shanghai"
    )  # the file's defaults
    assert body["submitted"] == {k: v for k, v in ADHOC.items() if k != "name"}
    definition = store.definition(redis, KEYS, "adhoc")
    assert definition is not None and definition.source is ScheduleSource.RUNTIME
    assert definition.to_spec().timeout == 20  # [defaults] timeout = "20s" of the test file
    score = redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("adhoc"))
    assert datetime.fromisoformat(body["next_fire_times"][0]) == datetime.fromtimestamp(score, UTC)

    listed = {s["name"]: s for s in call(client, "GET", "/api/schedules")[1]["schedules"]}
    assert {name: s["source"] for name, s in listed.items()} == {
        "adhoc": "runtime",
        "backfill": "declared",
        "hc": "declared",
        "nightly": "declared",
    }
    assert call(client, "GET", "/api/schedules/adhoc")[1]["submitted"]["every"] == "10m"
    assert "submitted" not in call(client, "GET", "/api/schedules/hc")[1]

    # An update that keeps the trigger and zone keeps the next tick; one that changes it moves it.
    redis.zadd(RQ_SCHEDULER_SET, {KEYS.template_id("adhoc"): 1234.0}, xx=True)
    status, body = call(client, "PUT", "/api/schedules/adhoc", {**ADHOC, "description": "renamed"})
    assert status == 200 and body["description"] == "renamed"
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("adhoc")) == 1234.0
    status, body = call(
        client, "PUT", "/api/schedules/adhoc", {"func": "jobs.system.health_check", "cron": "0 3 * * *"}
    )
    assert status == 200 and body["trigger"] == "at 03:00" and body["description"] == ""
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("adhoc")) != 1234.0

    seed_ledger(redis, "adhoc", ["succeeded"])
    response = client.delete("/api/schedules/adhoc", headers=AUTH)
    assert (response.status_code, response.get_data()) == (204, b"")
    assert store.definition(redis, KEYS, "adhoc") is None
    assert redis.zscore(RQ_SCHEDULER_SET, KEYS.template_id("adhoc")) is None
    assert not redis.exists(KEYS.template_key("adhoc"))
    assert len(Ledger(redis, KEYS).history("adhoc")) == 1  # its ledger stays
    assert call(client, "GET", "/api/schedules/adhoc/history")[0] == 200

    actions = [(e["action"], e["outcome"], e["source"]) for e in audit_entries(client, "adhoc")]
    assert actions == [
        ("schedule_delete", "ok", "api"),
        ("schedule_update", "ok", "api"),
        ("schedule_update", "ok", "api"),
        ("schedule_add", "ok", "api"),
    ]
    assert audit_entries(client, "adhoc")[-1]["detail"] == "jobs.system.health_check every 10m"


def test_declared_names_are_never_taken_and_never_changed_here(client: FlaskClient, redis: Redis) -> None:
    before = redis.hgetall(KEYS.definitions)
    for name in ("hc", "backfill"):  # registered, and declared but disabled (never registered)
        status, body = call(client, "POST", "/api/schedules", {**ADHOC, "name": name})
        assert status == 409 and "declared in the schedule file" in body["error"], body
        status, body = call(client, "PUT", f"/api/schedules/{name}", ADHOC | {"name": name})
        assert status == 409 and "change it there" in body["error"]
        assert call(client, "DELETE", f"/api/schedules/{name}")[0] == 409
    assert redis.hgetall(KEYS.definitions) == before
    assert call(client, "POST", "/api/schedules", ADHOC)[0] == 201
    status, body = call(client, "POST", "/api/schedules", ADHOC)
    assert status == 409 and "exists already" in body["error"]
    for method in ("PUT", "DELETE"):
        status, body = call(
            client, method, "/api/schedules/nope", ADHOC | {"name": "nope"} if method == "PUT" else None
        )
        assert (status, body) == (404, {"error": "unknown runtime schedule 'nope'"})
    refused = audit_entries(client, "hc")[0]
    assert (refused["action"], refused["outcome"]) == ("schedule_delete", "refused")


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({}, ["name: required, a string of 1-64 of a-z, 0-9, '_', '-'"]),
        ({**ADHOC, "name": 7}, ["name: required, a string of 1-64 of a-z, 0-9, '_', '-'"]),
        ({**ADHOC, "name": "Bad Name"}, ["invalid name: use 1-64 of a-z, 0-9, '_', '-'"]),
        (
            {"name": "x", "func": "os.system", "cron": "* * *", "every": "1m", "color": "red"},
            [
                "color: unknown key",
                "func: 'os.system' is outside the jobs package",
                "exactly one of cron, every, at is required (found cron, every)",
            ],
        ),
        ({"name": "x", "func": "jobs.system.nope", "cron": "1 2 3"}, None),
        # Inside the jobs package but not a job: the worker's machinery, an imported name.
        (
            {**ADHOC, "func": "jobs.clip_worker.main"},
            [
                "func: 'jobs.clip_worker.main' is in the worker's own modules (jobs.worker, jobs.runtime, "
                "jobs.outcomes, jobs.overlap, jobs.clip_worker), not a job"
            ],
        ),
        (
            {**ADHOC, "func": "jobs.diagnostics.select"},
            ["func: 'jobs.diagnostics' imports 'select': name the function where it is defined"],
        ),
        (
            {**ADHOC, "timeout": "20m"},
            [
                'timeout: 1200s is longer than the 600s between runs while overlap = "skip"; shorten it or set overlap = "allow"'
            ],
        ),
        (
            {**ADHOC, "enabled": False},
            ["enabled: a runtime schedule runs while it exists: pause or delete it"],
        ),
        ({**ADHOC, "every": None, "at": "2001-01-01T00:00:00"}, None),
        (
            {**ADHOC, "kwargs": {"scheduled_for": 1}},
            ["kwargs: scheduled_for is reserved: Cronwork passes the tick itself"],
        ),
    ],
)
def test_invalid_specs_are_400_listing_every_problem(
    client: FlaskClient, redis: Redis, body: dict[str, Any], problems: list[str] | None
) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = call(client, "POST", "/api/schedules", body)
    assert status == 400, answer
    assert answer["error"] == "invalid schedule: " + "; ".join(answer["problems"])
    if problems is not None:
        assert answer["problems"] == problems
    else:
        assert len(answer["problems"]) >= 1 and all(": " in p for p in answer["problems"])
    assert sorted(redis.hkeys(KEYS.definitions)) == [b"hc", b"nightly"]


def test_the_at_in_the_past_and_the_bad_cron_say_so(client: FlaskClient) -> None:
    status, body = call(
        client,
        "POST",
        "/api/schedules",
        {"name": "x", "func": "jobs.system.health_check", "at": "2001-01-01T00:00:00"},
    )
    assert (status, body["problems"]) == (400, ["at: 2001-01-01T00:00:00 (Asia/Shanghai) has passed"])
    status, body = call(
        client, "POST", "/api/schedules", {"name": "x", "func": "jobs.system.nope", "cron": "1 2 3"}
    )
    assert status == 400
    assert body["problems"] == [
        "func: 'jobs.system' has no callable 'nope'",
        "cron: expected 5 or 6 fields, got 3",
    ]


def test_bodies_that_are_not_a_json_object_are_refused(client: FlaskClient) -> None:
    assert call(client, "POST", "/api/schedules", data="{", content_type="application/json") == (
        400,
        {"error": "invalid JSON body"},
    )
    assert call(client, "POST", "/api/schedules", data="[1]", content_type="application/json")[0] == 400
    assert call(client, "POST", "/api/schedules", data="name=x", content_type="text/plain")[0] == 415
    big = json.dumps({"name": "x" * 20000})
    assert call(client, "POST", "/api/schedules", data=big, content_type="application/json")[0] == 413


def test_a_name_in_the_body_of_a_put_must_be_the_schedule_s(client: FlaskClient) -> None:
    call(client, "POST", "/api/schedules", ADHOC)
    status, body = call(client, "PUT", "/api/schedules/adhoc", {**ADHOC, "name": "other"})
    assert (status, body["problems"]) == (400, ["name: 'other' does not match the schedule 'adhoc'"])


def test_without_a_schedule_file_the_built_in_defaults_apply(
    client: FlaskClient, ops_app: Any, redis: Redis
) -> None:
    ops_app.config["SCHEDULE_FILE"] = None
    assert call(client, "POST", "/api/schedules", ADHOC)[0] == 201
    definition = store.definition(redis, KEYS, "adhoc")
    assert definition is not None
    spec = definition.to_spec()
    assert (spec.timeout, spec.misfire) == (300, "run_latest")


def test_the_api_needs_the_token(client: FlaskClient, redis: Redis) -> None:
    assert client.post("/api/schedules", json=ADHOC).status_code == 401
    assert client.delete("/api/schedules/hc").status_code == 401
    assert store.definition(redis, KEYS, "adhoc") is None


def test_a_runtime_schedule_whose_name_the_file_declares_later_is_shown_as_a_clash(
    client: FlaskClient, schedule_file: Path
) -> None:
    call(client, "POST", "/api/schedules", ADHOC)
    declared = '\n[schedules.adhoc]\nfunc = "jobs.system.health_check"\ncron = "0 1 * * *"\n'
    schedule_file.write_text(schedule_file.read_text() + declared)
    os.utime(schedule_file, ns=(1, 1))  # a new version even within one mtime tick
    listed = {s["name"]: s for s in call(client, "GET", "/api/schedules")[1]["schedules"]}["adhoc"]
    assert (listed["source"], listed["clash"], listed["enabled"], listed["trigger"]) == (
        "runtime",
        True,
        True,
        "every 10 minutes",
    )
    assert call(client, "DELETE", "/api/schedules/adhoc")[0] == 204  # the way out of the clash
