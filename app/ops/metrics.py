"""`/metrics`: Prometheus series read from Redis at scrape time.

Nothing is counted in process memory: forked workers and several web processes need no
shared state, and every scrape sees what Redis holds now. The per-schedule figures are kept
by the run transitions themselves as runs end (cronwork.stats): one hash read per scrape,
whatever the ledger keeps, and the run counters are true counters (a trimmed history never
takes them back).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from flask import Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from app.extensions import cronwork
from app.ops import ops_blueprint
from app.services.schedules import ScheduleService
from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.runs import RunState
from cronwork.spec import ScheduleSpec
from cronwork.stats import RunStats, run_stats

log = logging.getLogger(__name__)

EXTENSION = "cronwork_metrics"
# Run states a run ends in (or a tick is recorded as): the labels of the runs counter.
COUNTED = tuple(state for state in RunState if state.is_final)
_S = ("schedule",)
SCHEDULE_SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "lag": ("schedule_lag_seconds", "Push time (Redis's clock) minus tick of the newest scheduled run", _S),
    "latency": ("schedule_start_latency_seconds", "First start minus tick of the newest scheduled run", _S),
    "duration": ("schedule_last_duration_seconds", "Duration of the newest run that ended", _S),
    "success": ("schedule_last_success_timestamp_seconds", "End of the newest successful run", _S),
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
        runs = CounterMetricFamily(
            "cronwork_schedule_runs",
            "Runs ended (or ticks recorded) in each final state",
            labels=["schedule", "state"],
        )
        streaks: list[bytes | None] = []
        scores: list[float | None] = []
        if names:
            with redis.pipeline(transaction=False) as pipe:
                pipe.mget([self.keys.failure_streak(name) for name in names])
                pipe.zmscore(RQ_SCHEDULER_SET, [self.keys.template_id(name) for name in names])
                streaks, scores = pipe.execute()
        stats = run_stats(redis, self.keys, names)
        for name, streak, score in zip(names, streaks, scores, strict=True):
            self._stat_series(f, runs, name, stats[name])
            f["streak"].add_metric([name], float(streak or 0))
            f["paused"].add_metric([name], 1.0 if name in paused else 0.0)
            if score is not None:
                f["next"].add_metric([name], float(score))
        return [*f.values(), runs]

    @staticmethod
    def _stat_series(
        f: dict[str, GaugeMetricFamily], runs: CounterMetricFamily, name: str, stats: RunStats
    ) -> None:
        for key, figure in (
            ("lag", stats.lag),
            ("latency", stats.start_latency),
            ("duration", stats.duration),
            ("success", stats.success_at),
        ):
            if figure is not None:
                f[key].add_metric([name], figure)
        for state in COUNTED:
            runs.add_metric([name, state], float(stats.runs.get(state, 0)))

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
        offset = _gauge(
            "scheduler_clock_offset_seconds",
            "Redis's clock minus the scheduler host's (the scheduler schedules by Redis's)",
            ("scheduler",),
        )
        for name, seconds in sorted(store.live_scheduler_offsets(redis, self.keys, now).items()):
            offset.add_metric([name], seconds)
        families.append(offset)
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
