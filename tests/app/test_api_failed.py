"""API contract for /api/failed: list, requeue one, requeue all (optionally one schedule's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from redis import Redis

from cronwork.serializer import json_queue
from tests.app.conftest import bearer
from tests.conftest import Processes
from tests.jobs.helpers import enqueue_run, record

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("registered")]
AUTH = bearer()
BROKEN = 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\ntimeout = "10s"'


def fail_runs(redis: Redis, processes: Processes, name: str, count: int) -> list[str]:
    """Enqueue `count` runs of a failing schedule and let a real worker fail them."""
    base = datetime.now(UTC).replace(microsecond=0)
    ids = [enqueue_run(redis, name, BROKEN, base - timedelta(minutes=i)) for i in range(count)]
    run_worker(processes)
    return ids


def run_worker(processes: Processes) -> None:
    proc = processes.start("-m", "jobs.worker", "default", "--burst", name=f"worker-{len(processes.started)}")
    assert proc.wait(60) == 0, processes.output(proc)


def test_failed_list_and_requeue_one(client: FlaskClient, redis: Redis, processes: Processes) -> None:
    [job_id] = fail_runs(redis, processes, "broken", 1)
    listed = client.get("/api/failed", headers=AUTH).get_json()["failed"]
    assert [(r["job_id"], r["schedule"], r["error_type"], r["error"]) for r in listed] == [
        (job_id, "broken", "RuntimeError", "diagnostic failure")
    ]
    assert client.get("/api/failed?schedule=other", headers=AUTH).get_json() == {"failed": []}

    response = client.post(f"/api/failed/{job_id}/requeue", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["count"] == 1
    assert job_id in json_queue("default", redis).job_ids
    assert record(redis, "broken", job_id)["state"] == "enqueued"

    again = client.post(f"/api/failed/{job_id}/requeue", headers=AUTH)
    assert again.status_code == 404 and "not in the failed registry" in again.get_json()["error"]
    missing = client.post("/api/failed/nope/requeue", headers=AUTH)
    assert missing.status_code == 404 and missing.get_json() == {"error": "no job 'nope'"}


def test_requeue_all_of_one_schedule(client: FlaskClient, redis: Redis, processes: Processes) -> None:
    broken = fail_runs(redis, processes, "broken", 2)
    other = fail_runs(redis, processes, "also_broken", 1)

    response = client.post("/api/failed/requeue", headers=AUTH, json={"schedule": "broken"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 2 and sorted(r["job_id"] for r in body["requeued"]) == sorted(broken)
    remaining = [r["job_id"] for r in client.get("/api/failed", headers=AUTH).get_json()["failed"]]
    assert remaining == other

    assert client.post("/api/failed/requeue", headers=AUTH).get_json()["count"] == 1
    assert client.get("/api/failed", headers=AUTH).get_json() == {"failed": []}


def test_requeue_all_refuses_bad_input(client: FlaskClient) -> None:
    unknown = client.post("/api/failed/requeue", headers=AUTH, json={"schedule": "nope"})
    assert unknown.status_code == 404 and unknown.get_json() == {"error": "unknown schedule 'nope'"}
    for body in ({"schedule": 3}, {"schedule": ""}, {"queue": "default"}):
        assert client.post("/api/failed/requeue", headers=AUTH, json=body).status_code == 400
