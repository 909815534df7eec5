"""The ops surface with hostile jobs in Redis (see tests/test_hostile_redis.py): GET /api/failed,
the schedule pages and rq-dashboard never unpickle, never answer 500, and undecodable jobs are
listed as failed runs, can be deleted and are never requeued."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import rq_dashboard.web as rq_web
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from app.ops.dashboard import REPLACED_VIEWS
from bench.chaos.hostile import KINDS, Planted, plant, ran
from cronwork.jobdata import UNDECODABLE
from cronwork.keys import job_key
from cronwork.serializer import JSONJob, json_queue
from tests.app.conftest import basic, bearer, log_in
from tests.test_hostile_redis import REASONS


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where the payload writes if anything ever unpickles it."""
    return tmp_path / "PWNED"


@pytest.fixture
def planted(redis: Redis, marker: Path, registered: list[str]) -> Planted:
    return plant(redis, marker, "default")


def test_failed_list_shows_undecodable_jobs_as_failed_runs(
    client: FlaskClient, planted: Planted, marker: Path
) -> None:
    response = client.get("/api/failed", headers=bearer())
    assert response.status_code == 200
    listed = {r["job_id"]: r for r in response.get_json()["failed"]}
    assert sorted(listed) == sorted(planted.failed)
    for job_id, kind in zip(planted.failed, KINDS, strict=True):
        assert listed[job_id]["error_type"] == "UndecodableJob"
        assert listed[job_id]["error"] == f"{UNDECODABLE}: {REASONS[kind]}" or listed[job_id][
            "error"
        ].startswith(f"{UNDECODABLE}: {REASONS[kind]}")
        assert listed[job_id]["schedule"] is None
    # A schedule's list cannot claim them: they belong to no schedule.
    assert client.get("/api/failed?schedule=hc", headers=bearer()).get_json() == {"failed": []}
    assert ran(marker) == ""


def test_api_refuses_to_requeue_undecodable_jobs(client: FlaskClient, planted: Planted, marker: Path) -> None:
    for job_id in planted.failed:
        response = client.post(f"/api/failed/{job_id}/requeue", headers=bearer())
        assert response.status_code == 404 and UNDECODABLE in response.get_json()["error"]
    everything = client.post("/api/failed/requeue", headers=bearer())
    assert everything.status_code == 200, everything.get_json()
    listed = client.get("/api/failed", headers=bearer()).get_json()["failed"]
    assert sorted(r["job_id"] for r in listed) == sorted(planted.failed)  # all still there
    assert ran(marker) == ""


def test_schedule_pages_render(client: FlaskClient, planted: Planted, marker: Path) -> None:
    for path in ("/", "/schedules/hc", "/schedules/nightly"):
        assert client.get(path, headers=basic()).status_code == 200, path
    assert ran(marker) == ""


def test_dashboard_reads_every_job_view_without_unpickling(
    client: FlaskClient, planted: Planted, marker: Path
) -> None:
    for registry in ("queued", "failed", "scheduled", "started", "finished", "deferred", "canceled"):
        response = client.get(f"/rq/0/data/jobs/default/{registry}/50/asc/1.json", headers=basic())
        assert response.status_code in (200, 422), (registry, response.get_data(as_text=True))
    for path in (
        "/rq/",
        "/rq/0/view/jobs",
        "/rq/0/view/workers",
        "/rq/0/data/queues.json",
        "/rq/0/data/workers.json",
    ):
        assert client.get(path, headers=basic()).status_code == 200, path
    for job_id in planted.all():
        assert client.get(f"/rq/0/view/job/{job_id}", headers=basic()).status_code == 200, job_id
        info = client.get(f"/rq/0/data/job/{job_id}.json", headers=basic())
        assert info.status_code == 200, job_id
        body = info.get_json()
        if body.get("status") == "undecodable":
            assert body["description"].startswith(UNDECODABLE), body
    assert client.get("/rq/0/view/job/absent", headers=basic()).status_code == 404
    assert ran(marker) == ""


def test_dashboard_lists_workers_through_json_jobs(client: FlaskClient, redis: Redis) -> None:
    worker = Worker(["default"], connection=redis, name="hostile-test-worker", job_class=JSONJob)
    worker.register_birth()
    try:
        workers = client.get("/rq/0/data/workers.json", headers=basic()).get_json()["workers"]
    finally:
        worker.register_death()
    assert [(w["name"], w["queues"], w["current_job"]) for w in workers] == [
        ("hostile-test-worker", ["default"], "idle")
    ]


def test_dashboard_refuses_to_requeue_and_can_delete_undecodable_jobs(
    client: FlaskClient, redis: Redis, planted: Planted, marker: Path
) -> None:
    token = log_in(client)
    csrf = {"X-CSRFToken": token}
    pickled = planted.failed[0]
    requeue = client.post(f"/rq/job/{pickled}/requeue", headers=csrf)
    assert requeue.status_code == 200 and requeue.get_json()["status"] == "ERROR"
    assert UNDECODABLE in requeue.get_json()["error"]
    everything = client.post("/rq/requeue/default", headers=csrf).get_json()
    assert everything["count"] == 0 and sorted(everything["undecodable"]) == sorted(planted.failed)

    deleted = client.post(f"/rq/job/{pickled}/delete", headers=csrf)
    assert deleted.get_json() == {"status": "OK"}
    assert not redis.exists(job_key(pickled))
    assert pickled not in json_queue("default", redis).failed_job_registry
    emptied = client.post("/rq/queue/default/failed/empty", headers=csrf)
    assert emptied.get_json() == {"status": "OK"}
    assert json_queue("default", redis).failed_job_registry.get_job_ids() == []
    assert not any(redis.exists(job_key(j)) for j in planted.failed)
    assert ran(marker) == ""


def test_every_rq_dashboard_view_that_reads_jobs_its_own_way_is_replaced() -> None:
    """Contract with rq-dashboard 0.9: an upgrade that adds or renames such a view fails here."""
    source = Path(rq_web.__file__).read_text()
    reads_jobs = ("Job.fetch(", "requeue_job(", "get_current_job(", "delete_job_view(", "fetch_job(")
    helpers = {"get_queue_registry_jobs_count"}  # a plain function that fetches, called by list_jobs
    routed: set[str] = set()
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        body = ast.get_source_segment(source, node) or ""
        is_view = any("route" in ast.unparse(d) for d in node.decorator_list)
        if is_view and (any(c in body for c in reads_jobs) or any(f"{h}(" in body for h in helpers)):
            routed.add(node.name)
    assert routed and routed <= set(REPLACED_VIEWS), sorted(routed - set(REPLACED_VIEWS))
