"""rq-dashboard's requeue button writes no run record: the next attempt still comes out right."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from redis import Redis

from cronwork.ledger import Ledger
from tests.app.conftest import log_in
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import KEYS, enqueue_run, record, rq_status_is

pytestmark = pytest.mark.slow

DOOMED = 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\ntimeout = "10s"'


def burst(processes: Processes, name: str) -> None:
    proc = processes.start("-m", "jobs.worker", "default", "--burst", name=name)
    assert proc.wait(60) == 0, processes.output(proc)


def test_requeue_from_the_dashboard_numbers_the_attempt_and_counts_the_tick_once(
    client: FlaskClient, redis: Redis, processes: Processes
) -> None:
    job_id = enqueue_run(redis, "doomed", DOOMED)
    burst(processes, "first")
    wait_until(lambda: rq_status_is(redis, job_id, "failed"), timeout=10)

    csrf = {"X-CSRFToken": log_in(client)}
    response = client.post(f"/rq/job/{job_id}/requeue", headers=csrf)
    assert response.status_code == 200 and response.get_json()["status"] == "OK", response.get_json()
    burst(processes, "again")
    wait_until(lambda: rq_status_is(redis, job_id, "failed"), timeout=10)

    rec = record(redis, "doomed", job_id)
    assert rec["state"] == "failed" and rec["attempt"] == 2 and rec.get("requeued_at"), rec
    assert redis.get(KEYS.failure_streak("doomed")) == b"1"
    attempts = Ledger(redis, KEYS).attempts("doomed", rec["tick"])
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "failed")]
