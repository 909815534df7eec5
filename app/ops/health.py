"""`/healthz`: Redis, database, the end-to-end heartbeat, the scheduler loop and workers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import cronwork, db
from app.ops import ops_blueprint
from app.services.heartbeat import heartbeat_age
from cronwork import store
from cronwork.connection import describe_redis, mask_url
from cronwork.keys import Keys


@ops_blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when every part is healthy, 503 naming the failing part otherwise."""
    now = datetime.now(UTC)
    max_age = float(current_app.config["HEARTBEAT_MAX_AGE"])
    checks: dict[str, Any] = {}
    redis, keys = cronwork.redis(), cronwork.keys()
    try:
        redis.ping()
        scheduler_age = store.scheduler_heartbeat_age(redis, keys, now.timestamp())
        checks["redis"] = {"ok": True}
        # The same limit as the container probe (app/probe.py): one answer to "is it alive".
        checks["scheduler"] = {
            "ok": store.scheduler_alive(scheduler_age),
            "heartbeat_age": _round(scheduler_age),
            "max_age": store.SCHEDULER_HEARTBEAT_MAX_AGE,
        }
        checks["workers"] = _workers(redis, keys)
    except RedisError as exc:
        checks["redis"] = {"ok": False, "error": f"{describe_redis(cronwork.settings())}: {exc}"}
    try:
        db.session.execute(text("SELECT 1"))
        age = heartbeat_age(now)
        checks["database"] = {"ok": True}
        checks["health_check"] = {"ok": age is not None and age <= max_age, "age": _round(age)}
    except SQLAlchemyError as exc:
        url = mask_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
        checks["database"] = {"ok": False, "error": f"{url}: {type(exc).__name__}"}
    finally:
        db.session.remove()
    healthy = all(part["ok"] for part in checks.values()) and "health_check" in checks
    status = 200 if healthy else 503
    return jsonify({"status": "ok" if healthy else "unhealthy", "checks": checks}), status


def _workers(redis: Redis, keys: Keys) -> dict[str, Any]:
    """Live workers per queue; not ok when a registered schedule's queue has none."""
    workers = Worker.all(connection=redis)
    per_queue = Counter(q for w in workers for q in w.queue_names())
    needed = store.registered_queues(redis, keys)
    unserved = sorted(q for q in needed if not per_queue[q])
    return {
        "ok": not unserved,
        "count": len(workers),
        "queues": dict(sorted(per_queue.items())),
        **({"unserved_queues": unserved} if unserved else {}),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
