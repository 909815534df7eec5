"""`/metrics`: Prometheus series read from Redis at scrape time.

Nothing is counted in process memory: forked workers and several web processes need no
shared state, and every scrape sees what the ledger, registries and heartbeats hold now.

The per-run series look at the newest WINDOW runs of each schedule only (cronwork.summary:
one command per schedule in one round trip), so a scrape costs the same whatever the
ledger keeps; their help texts say so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask import Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from app.extensions import cronwork
from app.ops import ops_blueprint
from app.ops.display import parse_time, start_latency
from app.services.schedules import ScheduleService
from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.runs import FINAL_FAILURES, RunState
from cronwork.spec import ScheduleSpec
from cronwork.summary import newest_runs

log = logging.getLogger(__name__)

FINISHED = frozenset({RunState.SUCCEEDED, *FINAL_FAILURES})
EXTENSION = "cronwork_metrics"
WINDOW = 5  # newest runs per schedule the per-run series look at
# What those series read of each record.
RUN_FIELDS = ("state", "trigger", "lag", "started_at", "attempt", "duration", "ended_at")
_S = ("schedule",)
_IN = f"among its newest {WINDOW} runs"
SCHEDULE_SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "lag": ("schedule_lag_seconds", f"Enqueue time minus tick of the newest scheduled run {_IN}", _S),
    "latency": ("schedule_start_latency_seconds", f"Start minus tick of the newest first attempt {_IN}", _S),
    "duration": ("schedule_last_duration_seconds", f"Duration of the newest finished run {_IN}", _S),
    "success": ("schedule_last_success_timestamp_seconds", f"End of the newest successful run {_IN}", _S),
    "runs": ("schedule_runs", f"Ticks by state {_IN}", ("schedule", "state")),
    "missed": ("schedule_missed_ticks", f"Missed ticks {_IN}", _S),
    "streak": ("schedule_consecutive_failures", "Final failures in a row", _S),
    "paused": ("schedule_paused", "1 when paused by an operator", _S),
    "next": ("schedule_next_fire_timestamp_seconds", "Next scheduled tick", _S),
}


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"cronwork_{name}", doc, labels=list(labels))


class CronworkCollector:
    """A prometheus-client collector that reads schedules, queues and workers from Redis."""

    def __init__(self, connection: Callable[[], Redis], keys: Keys, clock: Callable[[], float] = time.time):
        self.connection = connection
        self.keys = keys
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Every series; on a Redis error only cronwork_redis_up 0 (the scrape itself succeeds)."""
        up = _gauge("redis_up", "1 when Redis answered this scrape")
        try:
            redis = self.connection()
            registered = ScheduleService(redis, self.keys).registered()  # read once for both
            families = [
                *self._schedules(redis, registered),
                *self._queues(redis, registered),
                *self._processes(redis),
            ]
        except RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _schedules(self, redis: Redis, registered: Mapping[str, ScheduleSpec]) -> list[Metric]:
        paused = store.paused_names(redis, self.keys)
        names = sorted(set(registered) | paused)
        f = {key: _gauge(name, doc, labels) for key, (name, doc, labels) in SCHEDULE_SERIES.items()}
        streaks: list[bytes | None] = []
        scores: list[float | None] = []
        if names:
            with redis.pipeline(transaction=False) as pipe:
                pipe.mget([self.keys.failure_streak(name) for name in names])
                pipe.zmscore(RQ_SCHEDULER_SET, [self.keys.template_id(name) for name in names])
                streaks, scores = pipe.execute()
        runs = newest_runs(redis, self.keys, names, WINDOW, RUN_FIELDS)
        for name, streak, score in zip(names, streaks, scores, strict=True):
            self._schedule_series(f, name, runs[name])
            f["streak"].add_metric([name], float(streak or 0))
            f["paused"].add_metric([name], 1.0 if name in paused else 0.0)
            if score is not None:
                f["next"].add_metric([name], float(score))
        return list(f.values())

    @staticmethod
    def _schedule_series(f: dict[str, GaugeMetricFamily], name: str, records: list[dict[str, Any]]) -> None:
        """Series derived from one schedule's ledger records (newest first)."""
        scheduled = [r for r in records if r.get("trigger", "schedule") != "manual"]
        lag = next((r["lag"] for r in scheduled if isinstance(r.get("lag"), int | float)), None)
        if lag is not None:
            f["lag"].add_metric([name], float(lag))
        latency = next(
            (start_latency(r) for r in scheduled if r.get("started_at") and r.get("attempt", 1) == 1), None
        )
        if latency is not None:
            f["latency"].add_metric([name], latency)
        finished = [r for r in records if r.get("state") in FINISHED]
        duration = next((r["duration"] for r in finished if "duration" in r), None)
        if isinstance(duration, int | float):
            f["duration"].add_metric([name], float(duration))
        success = next(
            (parse_time(r.get("ended_at")) for r in finished if r["state"] == RunState.SUCCEEDED), None
        )
        if success is not None:
            f["success"].add_metric([name], success.timestamp())
        counts = Counter(str(r.get("state")) for r in records)
        for state in RunState:
            f["runs"].add_metric([name, state], float(counts[state]))
        f["missed"].add_metric([name], float(counts[RunState.MISSED]))

    def _queues(self, redis: Redis, registered: Mapping[str, ScheduleSpec]) -> list[Metric]:
        length = _gauge("queue_length", "Jobs waiting in the queue", ("queue",))
        started = _gauge("queue_started_jobs", "Jobs running now (started registry)", ("queue",))
        failed = _gauge("queue_failed_jobs", "Jobs in the failed registry", ("queue",))
        names = {q.name for q in Queue.all(connection=redis)}
        names |= {spec.queue for spec in registered.values()}
        for name in sorted(names):
            queue = Queue(name, connection=redis)
            length.add_metric([name], float(queue.count))
            started.add_metric([name], float(StartedJobRegistry(queue=queue).get_job_count(cleanup=False)))
            failed.add_metric([name], float(FailedJobRegistry(queue=queue).get_job_count(cleanup=False)))
        return [length, started, failed]

    def _processes(self, redis: Redis) -> list[Metric]:
        now = self.clock()
        families: list[Metric] = []
        beat_age = store.scheduler_heartbeat_age(redis, self.keys, now)
        if beat_age is not None:
            age = _gauge("scheduler_heartbeat_age_seconds", "Seconds since a scheduler loop completed a pass")
            age.add_metric([], max(beat_age, 0.0))
            families.append(age)
        workers = Worker.all(connection=redis)
        total = _gauge("workers", "Live RQ workers")
        total.add_metric([], float(len(workers)))
        per_queue = _gauge("queue_workers", "Live RQ workers listening on the queue", ("queue",))
        for queue, count in sorted(Counter(q for w in workers for q in w.queue_names()).items()):
            per_queue.add_metric([queue], float(count))
        return [*families, total, per_queue]


def build_registry(app: Flask) -> CollectorRegistry:
    """A registry of the app's own (never the global one: tests create many apps)."""
    registry = CollectorRegistry()
    registry.register(CronworkCollector(lambda: cronwork.redis(app), cronwork.keys(app)))
    return registry


@ops_blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition, open like /healthz (no secrets in it)."""
    registry = current_app.extensions.get(EXTENSION)
    if registry is None:
        # ignore: Flask types current_app as Flask, but it is a LocalProxy to unwrap.
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        registry = current_app.extensions[EXTENSION] = build_registry(app)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
