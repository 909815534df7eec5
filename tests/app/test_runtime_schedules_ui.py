"""Runtime schedules from the ops pages (login, CSRF, escaping) and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from redis import Redis

from cronwork import audit, store
from cronwork.store import ScheduleSource
from tests.app.conftest import KEYS, log_in

pytestmark = pytest.mark.usefixtures("registered")
XSS = '<script>alert("x")</script>'
SPEC = {"func": "jobs.system.health_check", "every": "10m", "description": XSS}


@pytest.fixture
def runner(ops_app: Flask) -> FlaskCliRunner:
    return ops_app.test_cli_runner()


def actions_of(redis: Redis, name: str) -> list[tuple[str, str, str]]:
    entries = audit.recent(redis, KEYS, name)
    return [
        (str(e.action), str(e.source), str(e.outcome)) for e in entries if isinstance(e, audit.AuditEntry)
    ]


def spec_of(redis: Redis, name: str) -> dict[str, Any]:
    definition = store.definition(redis, KEYS, name)
    assert definition is not None
    return definition.spec


def test_add_edit_delete_by_form_with_the_description_escaped(client: FlaskClient, redis: Redis) -> None:
    token = log_in(client)
    form = client.get("/runtime-schedules/new").get_data(as_text=True)
    assert 'name="spec"' in form and 'name="csrf_token"' in form
    added = client.post(
        "/runtime-schedules/new", data={"name": "adhoc", "spec": json.dumps(SPEC), "csrf_token": token}
    )
    assert (added.status_code, added.headers["Location"]) == (303, "/schedules/adhoc")
    definition = store.definition(redis, KEYS, "adhoc")
    assert definition is not None and definition.source is ScheduleSource.RUNTIME

    for page in ("/", "/schedules/adhoc"):
        html = client.get(page).get_data(as_text=True)
        assert XSS not in html and "&lt;script&gt;alert(" in html, page
        assert 'class="badge b-runtime"' in html
    edit = client.get("/schedules/adhoc/edit").get_data(as_text=True)
    assert XSS not in edit and "&lt;script&gt;" in edit  # the textarea too
    assert client.get("/schedules/hc/edit").status_code == 404  # declared: edited in the file

    changed = client.post(
        "/schedules/adhoc/edit", data={"spec": json.dumps({**SPEC, "every": "20m"}), "csrf_token": token}
    )
    assert changed.status_code == 303
    assert spec_of(redis, "adhoc")["trigger"]["every"] == 1200

    deleted = client.post("/schedules/adhoc/delete", data={"csrf_token": token})
    assert (deleted.status_code, deleted.headers["Location"]) == (303, "/")
    assert store.definition(redis, KEYS, "adhoc") is None
    assert actions_of(redis, "adhoc") == [
        ("schedule_delete", "page", "ok"),
        ("schedule_update", "page", "ok"),
        ("schedule_add", "page", "ok"),
    ]


def test_a_refused_form_keeps_what_was_typed_and_lists_the_problems(
    client: FlaskClient, redis: Redis
) -> None:
    token = log_in(client)
    typed = json.dumps({"func": "os.system", "cron": "1 2 3", "description": XSS})
    refused = client.post(
        "/runtime-schedules/new", data={"name": "adhoc", "spec": typed, "csrf_token": token}
    )
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert "func: &#39;os.system&#39; is outside the jobs package" in html
    assert "cron: expected 5 or 6 fields, got 3" in html
    assert XSS not in html and "&lt;script&gt;" in html  # the typed text is back, escaped
    assert (
        client.post(
            "/runtime-schedules/new", data={"name": "x", "spec": "{nope", "csrf_token": token}
        ).status_code
        == 400
    )
    taken = client.post(
        "/runtime-schedules/new", data={"name": "hc", "spec": json.dumps(SPEC), "csrf_token": token}
    )
    assert taken.status_code == 409 and "declared in the schedule file" in taken.get_data(as_text=True)
    kept = client.post("/schedules/hc/delete", data={"csrf_token": token}, follow_redirects=True)
    assert "change it there" in kept.get_data(as_text=True)
    assert sorted(redis.hkeys(KEYS.definitions)) == [b"hc", b"nightly"]
    assert ("schedule_add", "page", "refused") in actions_of(redis, "hc")


def test_the_forms_need_a_login_and_the_csrf_token(client: FlaskClient, redis: Redis) -> None:
    data = {"name": "adhoc", "spec": json.dumps(SPEC)}
    assert client.post("/runtime-schedules/new", data=data).status_code == 401
    log_in(client)
    assert client.post("/runtime-schedules/new", data=data).status_code == 403
    assert client.post("/runtime-schedules/new", data={**data, "csrf_token": "forged"}).status_code == 403
    assert store.definition(redis, KEYS, "adhoc") is None


def test_cli_add_update_delete(runner: FlaskCliRunner, redis: Redis, tmp_path: Path) -> None:
    out = runner.invoke(args=["schedules", "add", "--json", json.dumps({**SPEC, "name": "adhoc"})])
    assert out.exit_code == 0, out.output
    assert out.output == "added runtime schedule adhoc: jobs.system.health_check every 10m\n"
    listed = runner.invoke(args=["schedules", "list"]).output
    assert "\truntime" in next(line for line in listed.splitlines() if line.startswith("adhoc\t"))
    as_json = {s["name"]: s for s in json.loads(runner.invoke(args=["schedules", "list", "--json"]).output)}
    assert (as_json["adhoc"]["source"], as_json["hc"]["source"]) == ("runtime", "declared")

    spec_file = tmp_path / "adhoc.json"
    spec_file.write_text(json.dumps({"func": "jobs.system.health_check", "cron": "0 4 * * *"}))
    out = runner.invoke(args=["schedules", "update", "adhoc", "--file", str(spec_file)])
    assert out.exit_code == 0, out.output
    assert spec_of(redis, "adhoc")["trigger"] == {"cron": "0 4 * * *"}
    out = runner.invoke(args=["schedules", "update", "adhoc", "--file", "-"], input=json.dumps(SPEC))
    assert out.exit_code == 0, out.output

    bad = runner.invoke(
        args=["schedules", "add", "--json", '{"name": "x", "func": "os.system", "cron": "1"}']
    )
    assert bad.exit_code == 1
    assert "invalid schedule:\n  func: 'os.system' is outside the jobs package\n  cron:" in bad.output
    assert runner.invoke(args=["schedules", "add", "--json", "[1]"]).exit_code == 2
    assert runner.invoke(args=["schedules", "add"]).exit_code == 2  # neither --json nor --file
    taken = runner.invoke(args=["schedules", "delete", "hc"])
    assert taken.exit_code == 1 and "declared in the schedule file" in taken.output

    out = runner.invoke(args=["schedules", "delete", "adhoc"])
    assert (out.exit_code, out.output) == (0, "deleted runtime schedule adhoc\n")
    assert runner.invoke(args=["schedules", "delete", "adhoc"]).exit_code == 1
    assert actions_of(redis, "adhoc") == [
        ("schedule_delete", "cli", "refused"),
        ("schedule_delete", "cli", "ok"),
        ("schedule_update", "cli", "ok"),
        ("schedule_update", "cli", "ok"),
        ("schedule_add", "cli", "ok"),
    ]
