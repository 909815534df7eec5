"""Health of every part, read once by `collect_checks()`: `/healthz` (JSON, for probes) and
`/health` (the page) show the same checks.

The pipeline rule (the health_check job's heartbeat, app/services/heartbeat.py): it passes when
the last beat is at most HEARTBEAT_MAX_AGE old. Without such a beat it is *pending*, counted
healthy, while the job has not had its chance yet: no health_check tick recorded after the last
beat, and after the oldest live worker of its queue came up, is HEARTBEAT_MAX_AGE old
(missed ticks do not count: the scheduler check covers a scheduler that was down). So a fresh
start or a restart after downtime is healthy as soon as the scheduler loop beats and a worker
is alive, instead of 503 until the first run (up to 30 s). It fails once such a tick is older
than that, when PIPELINE_TICKS ticks passed without a beat, or when no registered schedule runs
the health_check job.

Workers count only with a fresh heartbeat: rq's `Worker.all()` lists a worker whose process
died without deregistering until its key expires (rq: worker_ttl + 60 s); one whose
`last_heartbeat` is older than its `worker_ttl` is left out (Cronwork's own workers also
let their key expire 45 s after the last beat, jobs/worker/defaults.py).

The CLIP model (issue 15) is checked when a registered schedule runs the CLIP job: its files
are there and its model.json and prompts read (app.services.clip_files; nothing is loaded,
the web never imports the vision libraries). A missing model is shown, and the JSON says
`"ok": false, "required": false`, but it does not make the system unhealthy: every other
job runs without it, and the CLIP job says the same thing in its failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app, jsonify, render_template
from flask.typing import ResponseReturnValue
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.worker import BaseWorker
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import cronwork, db
from app.ops import ops_blueprint, pages_blueprint
from app.services.clip_files import ClipModelError, check_model_dir, read_prompts
from app.services.heartbeat import heartbeat_age
from cronwork import store
from cronwork.connection import describe_redis, mask_url
from cronwork.keys import Keys
from cronwork.runs import RunState
from cronwork.summary import newest_runs

HEALTH_CHECK_FUNC = "jobs.system.health_check"  # by name: the app never imports jobs
CLIP_JOB_FUNC = "jobs.vision.daily_clip_inference"
CLIP_CHECK, CLIP_LABEL = "clip_model", "CLIP model"
PIPELINE_TICKS = 20  # newest health_check ticks read; this many without a beat is a failure


@dataclass
class Check:
    """One part's health: `status` is ok, pending (counted healthy), failing or unknown (not
    checked: what it needs is down); `data` is its JSON form's fields besides `ok`."""

    name: str
    label: str
    status: str
    detail: str = ""
    error: str | None = None
    age: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    required: bool = True  # False: shown, but not part of the verdict (the CLIP model)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "pending")


def collect_checks(now: datetime | None = None) -> list[Check]:
    """Redis, the scheduler loop, workers per queue, the database and the pipeline heartbeat."""
    now = now or datetime.now(UTC)
    redis, keys = cronwork.redis(), cronwork.keys()
    checks: list[Check] = []
    workers: list[BaseWorker] = []
    definitions: dict[str, store.Definition] = {}
    redis_ok = True
    try:
        redis.ping()
        checks.append(Check("redis", "Redis", "ok", describe_redis(cronwork.settings())))
        age = store.scheduler_heartbeat_age(redis, keys, now.timestamp())
        checks.append(_scheduler(age))
        definitions = store.definitions(redis, keys)
        workers = live_workers(redis, now)
        checks.append(_workers(workers, {str(d.spec["queue"]) for d in definitions.values()}))
    except RedisError as exc:
        redis_ok = False
        where = describe_redis(cronwork.settings())
        error = f"{where}: {exc}"
        checks.append(Check("redis", "Redis", "failing", where, error=error, data={"error": error}))
        for name, label in (("scheduler", "Scheduler loop"), ("workers", "Workers")):
            checks.append(Check(name, label, "unknown", "not checked: Redis is not answering"))
    try:
        db.session.execute(text("SELECT 1"))
        beat_age = heartbeat_age(now)
        checks.append(Check("database", "Database", "ok", _database_url()))
        if redis_ok:
            checks.append(_pipeline(redis, keys, now, beat_age, definitions, workers))
        else:
            checks.append(_pipeline_unknown(beat_age))
    except SQLAlchemyError as exc:
        url = _database_url()
        error = f"{url}: {type(exc).__name__}"
        checks.append(Check("database", "Database", "failing", url, error=error, data={"error": error}))
        checks.append(Check("health_check", "Pipeline heartbeat", "unknown", "not checked: database down"))
    finally:
        db.session.remove()
    if any(d.spec.get("func") == CLIP_JOB_FUNC for d in definitions.values()):
        checks.append(_clip_model())
    return checks


def healthy(checks: Sequence[Check]) -> bool:
    """Every required part ok or pending, and the pipeline was checked at all."""
    required = [c for c in checks if c.required]
    return all(c.ok for c in required) and all(c.status != "unknown" for c in required)


@ops_blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when every part is healthy, 503 naming the failing part otherwise (for probes)."""
    checks = collect_checks()
    ok = healthy(checks)
    body = {c.name: {"ok": c.ok, **c.data} for c in checks if c.status != "unknown"}
    return jsonify({"status": "ok" if ok else "unhealthy", "checks": body}), 200 if ok else 503


@pages_blueprint.get("/health")
def health_page() -> ResponseReturnValue:
    """The same checks as /healthz, as a page: status, age and error of each part."""
    checks = collect_checks()
    ok = healthy(checks)
    max_age = float(current_app.config["HEARTBEAT_MAX_AGE"])
    page = render_template(
        "ops/health.html",
        checks=checks,
        healthy=ok,
        max_age=max_age,
        scheduler_max_age=store.SCHEDULER_HEARTBEAT_MAX_AGE,
        ticks=PIPELINE_TICKS,
    )
    return page, 200 if ok else 503


def live_workers(redis: Redis, now: datetime) -> list[BaseWorker]:
    """rq's workers with a fresh heartbeat: a dead one's key outlives it (see the module doc)."""
    return [w for w in Worker.all(connection=redis) if _fresh(w, now)]


def _fresh(worker: BaseWorker, now: datetime) -> bool:
    beat = worker.last_heartbeat
    return beat is not None and (now - beat).total_seconds() <= worker.worker_ttl


def _scheduler(age: float | None) -> Check:
    # The same limit as the container probe (app/probe.py): one answer to "is it alive".
    limit = store.SCHEDULER_HEARTBEAT_MAX_AGE
    alive = store.scheduler_alive(age)
    data = {"heartbeat_age": _round(age), "max_age": limit}
    if age is None:
        return Check("scheduler", "Scheduler loop", "failing", error="no scheduler loop ever beat", data=data)
    detail = f"last pass {age:.1f}s ago (limit {limit:.0f}s)"
    error = None if alive else f"no loop pass for {age:.0f}s: no scheduler advances"
    return Check("scheduler", "Scheduler loop", "ok" if alive else "failing", detail, error, age, data)


def _workers(workers: Sequence[BaseWorker], needed: set[str]) -> Check:
    """Live workers per queue; failing when a registered schedule's queue has none."""
    per_queue = Counter(q for w in workers for q in w.queue_names())
    unserved = sorted(q for q in needed if not per_queue[q])
    data: dict[str, Any] = {"count": len(workers), "queues": dict(sorted(per_queue.items()))}
    if unserved:
        data["unserved_queues"] = unserved
    detail = f"{len(workers)} live worker{'s' if len(workers) != 1 else ''}"
    error = f"no live worker on queue {', '.join(unserved)}" if unserved else None
    status = "failing" if unserved else "ok"
    return Check("workers", "Workers", status, detail, error, data=data, queues=data["queues"])


def _pipeline(
    redis: Redis,
    keys: Keys,
    now: datetime,
    beat_age: float | None,
    definitions: dict[str, store.Definition],
    workers: Sequence[BaseWorker],
) -> Check:
    """The pipeline rule of the module doc."""
    max_age = float(current_app.config["HEARTBEAT_MAX_AGE"])

    def check(status: str, detail: str, error: str | None = None) -> Check:
        data: dict[str, Any] = {"age": _round(beat_age), "max_age": max_age}
        if status == "pending":
            data["pending"] = True
        return Check("health_check", "Pipeline heartbeat", status, detail, error, beat_age, data)

    last = "never beat" if beat_age is None else f"last beat {beat_age:.0f}s ago"
    if beat_age is not None and beat_age <= max_age:
        return check("ok", f"{last} (limit {max_age:.0f}s)")
    names = sorted(n for n, d in definitions.items() if d.spec.get("func") == HEALTH_CHECK_FUNC)
    if not names:
        return check("failing", last, f"no registered schedule runs {HEALTH_CHECK_FUNC}: nothing beats")
    queues = {str(definitions[n].spec["queue"]) for n in names}
    births = [w.birth_date for w in workers if w.birth_date and queues & set(w.queue_names())]
    if not births:
        return check("failing", last, f"no live worker on queue {', '.join(sorted(queues))} to run it")
    since = max(min(births).timestamp(), now.timestamp() - beat_age if beat_age is not None else 0.0)
    runs = newest_runs(redis, keys, names, PIPELINE_TICKS, ("state",))
    records = [r for rs in runs.values() for r in rs]
    ticks = [r["tick"] for r in records if r["tick"] > since and r["state"] != RunState.MISSED]
    overdue = [t for t in ticks if now.timestamp() - t > max_age]
    if overdue or len(ticks) >= PIPELINE_TICKS:
        late = now.timestamp() - min(ticks)
        error = f"{len(ticks)} health_check runs since, the first {late:.0f}s ago: no beat"
        return check("failing", last, error)
    waiting = f"{len(ticks)} run(s) under way" if ticks else "waiting for its next tick"
    return check("pending", f"{last}; {waiting} (each has {max_age:.0f}s to beat)")


def _clip_model() -> Check:
    """The CLIP model's files (see the module doc): ok, or missing without failing the system."""
    directory = Path(current_app.config["CLIP_MODEL_DIR"])
    try:
        manifest = check_model_dir(directory)
        read_prompts(Path(current_app.config["CLIP_PROMPTS_FILE"]))
    except ClipModelError as exc:
        absent: dict[str, Any] = {"required": False, "present": False}
        return Check(CLIP_CHECK, CLIP_LABEL, "missing", str(directory), str(exc), data=absent, required=False)
    data = {"required": False, "present": True, "model": manifest.label}
    detail = f"{manifest.label} in {directory}"
    return Check(CLIP_CHECK, CLIP_LABEL, "ok", detail, data=data, required=False)


def _pipeline_unknown(beat_age: float | None) -> Check:
    detail = "not checked: Redis is not answering"
    return Check("health_check", "Pipeline heartbeat", "unknown", detail, age=beat_age)


def _database_url() -> str:
    return mask_url(str(current_app.config["SQLALCHEMY_DATABASE_URI"]))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
