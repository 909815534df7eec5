"""The ops surface with hostile jobs in Redis (see tests/test_hostile_redis.py): GET /api/failed,
the schedule pages and rq-dashboard never unpickle, never answer 500, and undecodable jobs are
listed as failed runs, can be deleted and are never requeued."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest
import rq_dashboard.web as rq_web
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from app import create_app
from app.config import PROJECT_ROOT
from app.embedded_redis import free_port
from app.extensions import db
from app.ops.dashboard import REPLACED_VIEWS
from bench.chaos.hostile import KINDS, Planted, plant, ran
from cronwork.jobdata import UNDECODABLE
from cronwork.keys import job_key
from cronwork.serializer import JSONJob, json_queue
from tests.app.conftest import KEYS, PASSWORD, TOKEN, USER, basic, bearer, log_in
from tests.conftest import Processes
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


# --- The small ones (issue 13, point 7) -------------------------------------------------------

QUERY_SECRET = "Qry-S3cret-Value"
DEEP = 5000  # levels: ~10 KB, under the API's 16 KB body limit


@pytest.mark.parametrize(
    "body",
    ["[" * DEEP + "]" * DEEP, '{"reason":' + '{"":' * 3000 + "1" + "}" * 3001],
    ids=["array", "object"],
)
@pytest.mark.parametrize(
    "path", ["/api/schedules/hc/pause", "/api/schedules/hc/run", "/api/failed/requeue"]
)
def test_deeply_nested_json_is_a_400_not_a_500(client: FlaskClient, path: str, body: str) -> None:
    assert len(body.encode()) < 16 * 1024
    response = client.post(path, data=body, headers={**bearer(), "Content-Type": "application/json"})
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.get_json() == {"error": "invalid JSON body: nested too deeply"}


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\u2028", "U+2028 (LINE SEPARATOR)"),
        ("\u2029", "U+2029 (PARAGRAPH SEPARATOR)"),
        ("\r", "U+000D (CARRIAGE RETURN)"),
        ("\n", "U+000A (LINE FEED)"),
        ("\u0085", "U+0085 (NEXT LINE)"),
        ("\x1b", "U+001B (a control character)"),
        ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("\u202a", "U+202A (LEFT-TO-RIGHT EMBEDDING)"),
        ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
        ("\u2069", "U+2069 (POP DIRECTIONAL ISOLATE)"),
        ("\u200f", "U+200F (RIGHT-TO-LEFT MARK)"),
        ("\u061c", "U+061C (ARABIC LETTER MARK)"),
    ],
)
def test_pause_reasons_refuse_separators_and_bidi_controls(
    client: FlaskClient, redis: Redis, registered: list[str], char: str, shown: str
) -> None:
    reason = f"disk full{char}resumed by admin"
    response = client.post("/api/schedules/hc/pause", json={"reason": reason}, headers=bearer())
    assert response.status_code == 400
    assert response.get_json()["error"] == f"reason must be one line of plain text: {shown} is not allowed"
    assert not redis.hexists(KEYS.paused, "hc")


def test_pause_reasons_keep_ordinary_unicode(client: FlaskClient, registered: list[str]) -> None:
    reason = "migración de datos — équipe 运维 👩\u200d💻"  # a zero-width joiner is no control
    response = client.post("/api/schedules/hc/pause", json={"reason": reason}, headers=bearer())
    assert response.status_code == 200 and response.get_json()["reason"] == reason


def _app_on(redis_url: str, database_url: str) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": redis_url,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "test-secret",
            "ADMIN_TOKEN": TOKEN,
            "ADMIN_USER": USER,
            "ADMIN_PASSWORD": PASSWORD,
        }
    )


def test_a_password_in_the_redis_url_query_is_masked_on_health(redis_url: str, database_url: str) -> None:
    app = _app_on(f"{redis_url}?username=default&password={QUERY_SECRET}", database_url)
    client = app.test_client()
    probe = client.get("/healthz")
    assert probe.get_json()["checks"]["redis"]["ok"] is True  # the URL works: redis-py reads the query
    page = client.get("/health", headers=basic())
    assert page.status_code in (200, 503)
    for body in (probe.get_data(as_text=True), page.get_data(as_text=True)):
        assert QUERY_SECRET not in body
    assert f"{redis_url}?username=default&amp;password=***" in page.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def test_a_password_in_the_query_of_an_unreachable_redis_is_masked_on_503s(database_url: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password={QUERY_SECRET}"
    app = _app_on(url, database_url)
    client = app.test_client()
    masked = url.replace(QUERY_SECRET, "***")
    for path in ("/", "/rq/"):
        page = client.get(path, headers={**basic(), "Accept": "text/html"})
        assert page.status_code == 503 and masked in page.get_data(as_text=True), path
    api = client.get("/api/schedules", headers=bearer())
    assert api.status_code == 503 and api.get_json() == {"error": f"Redis at {masked} is not answering."}
    probe = client.get("/healthz")
    assert probe.status_code == 503 and masked in probe.get_json()["checks"]["redis"]["error"]
    for response in (page, api, probe):
        assert QUERY_SECRET not in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def test_a_password_in_the_database_url_query_is_masked_on_health(redis_url: str) -> None:
    url = f"postgresql+psycopg://cronwork@127.0.0.1:{free_port()}/cronwork?password={QUERY_SECRET}&connect_timeout=2"
    app = _app_on(redis_url, url)
    probe = app.test_client().get("/healthz")
    database = probe.get_json()["checks"]["database"]
    assert database["ok"] is False and url.replace(QUERY_SECRET, "***") in database["error"]
    assert QUERY_SECRET not in probe.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


@pytest.mark.slow
def test_gunicorn_start_up_lines_mask_a_password_in_the_query(processes: Processes) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password={QUERY_SECRET}"
    web = processes.start(
        "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()", name="web",
        extra_env={"REDIS_URL": url, "STARTUP_TIMEOUT": "0.5", "WEB_PORT": str(free_port())},
    )
    assert web.wait(30) == 1
    output = processes.output(web)
    assert f"web: cannot reach Redis at {url.replace(QUERY_SECRET, '***')} after" in output
    assert QUERY_SECRET not in output


@pytest.mark.slow
def test_gunicorn_opens_no_control_socket_shared_between_instances(
    processes: Processes, tmp_path: Path
) -> None:
    """gunicorn 27's default is one socket per user ($XDG_RUNTIME_DIR/gunicorn.ctl or
    ~/.gunicorn/gunicorn.ctl) that every instance takes over; ours is off."""
    runtime, home = tmp_path / "xdg", tmp_path / "home"
    runtime.mkdir()
    home.mkdir()
    processes.start_web(XDG_RUNTIME_DIR=str(runtime), HOME=str(home))
    assert list(runtime.rglob("*")) == [] and list(home.rglob("*.ctl")) == []


def test_a_control_socket_is_opened_only_at_a_path_of_the_instance_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn reads its config file's module globals, as runpy gives them."""
    path = str(PROJECT_ROOT / "gunicorn.conf.py")
    monkeypatch.delenv("WEB_CONTROL_SOCKET", raising=False)
    default = runpy.run_path(path)
    assert default["control_socket_disable"] is True and "control_socket" not in default
    monkeypatch.setenv("WEB_CONTROL_SOCKET", "/run/cronwork/web-8000.ctl")
    chosen = runpy.run_path(path)
    assert chosen["control_socket_disable"] is False and chosen["control_socket"] == "/run/cronwork/web-8000.ctl"


@pytest.mark.parametrize("garbage", [b"not a number", b"\x80\x04pickle", b"-7"])
def test_garbage_in_a_failure_streak_breaks_no_page_metric_or_alert(
    app: Flask, client: FlaskClient, redis: Redis, registered: list[str], garbage: bytes
) -> None:
    """The streak is FINISH's counter; whatever else is written there reads as 0 (it made
    /metrics, the pages and the alerts raise ValueError)."""
    from jobs.alerts import on_final_failure

    redis.set(KEYS.failure_streak("hc"), garbage)
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert 'cronwork_schedule_consecutive_failures{schedule="hc"} 0.0' in scrape.get_data(as_text=True)
    listed = client.get("/api/schedules", headers=bearer())
    assert listed.status_code == 200
    assert {s["name"]: s["consecutive_failures"] for s in listed.get_json()["schedules"]}["hc"] == 0
    assert client.get("/", headers=basic()).status_code == 200
    on_final_failure(app, redis, KEYS, "hc", "cronwork-hc-1", "failed", "boom", 2)  # no ValueError


def test_garbage_in_the_auth_counters_breaks_no_scrape(client: FlaskClient, redis: Redis) -> None:
    redis.hset(KEYS.auth_failures, mapping={"form": b"lots", "bearer": b"\x80\x04"})
    redis.hset(KEYS.auth_lockouts, mapping={"client": b"-"})
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert 'cronwork_auth_failures_total{scheme="form"} 0.0' in scrape.get_data(as_text=True)
