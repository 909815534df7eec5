"""/healthz reports live workers per queue and fails when a schedule's queue has none."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from cronwork.serializer import json_queue


@pytest.mark.usefixtures("registered")
def test_workers_per_queue(client: FlaskClient, redis: Redis) -> None:
    workers = client.get("/healthz").get_json()["checks"]["workers"]
    assert workers == {"ok": False, "count": 0, "queues": {}, "unserved_queues": ["default"]}

    Worker(
        [json_queue("default", redis), json_queue("low", redis)], connection=redis
    ).register_birth()
    response = client.get("/healthz")
    assert response.get_json()["checks"]["workers"] == {
        "ok": True,
        "count": 1,
        "queues": {"default": 1, "low": 1},
    }
    assert response.status_code == 503  # no scheduler heartbeat, no health_check beat: still unhealthy


def test_no_schedule_needs_no_worker(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json()["checks"]["workers"]["ok"] is True
