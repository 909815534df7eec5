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
from collections.abc import Callable, Iterator, Mapping, Sequence

from flask import Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import BaseWorker

from app.extensions import cronwork
from app.ops import ops_blueprint
from app.services.alerts import pending_count
from app.services.schedules import ScheduleService
from cronwork import auth_failures, store
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.runs import RunState, decode_streak
from cronwork.serializer import JSONJob
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
            workers = Worker.all(connection=redis)  # and these for the queues and the total
            families = [
                *self._schedules(redis, registered),
                *self._queues(redis, registered, workers),
                *self._processes(redis, workers),
                *self._auth(redis),
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
            f["streak"].add_metric([name], float(decode_streak(streak)))
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

    def _queues(
        self, redis: Redis, registered: Mapping[str, ScheduleSpec], workers: Sequence[BaseWorker]
    ) -> list[Metric]:
        """Every queue that exists, that a registered schedule uses or that a worker listens on;
        the last two with zeros too, so "no worker for a schedule's queue" is a series (the
        same rule as /healthz's unserved queues)."""
        length = _gauge("queue_length", "Jobs waiting in the queue", ("queue",))
        waited = _gauge(
            "queue_oldest_job_age_seconds",
            "Seconds the next job to be taken has waited since it was enqueued (0: queue empty)",
            ("queue",),
        )
        started = _gauge("queue_started_jobs", "Jobs running now (started registry)", ("queue",))
        failed = _gauge("queue_failed_jobs", "Jobs in the failed registry", ("queue",))
        served = _gauge("queue_workers", "Live RQ workers listening on the queue", ("queue",))
        used = _gauge("queue_schedules", "Registered schedules that enqueue to the queue", ("queue",))
        schedules = Counter(spec.queue for spec in registered.values())
        listening = Counter(q for w in workers for q in w.queue_names())
        names = {q.name for q in Queue.all(connection=redis)} | set(schedules) | set(listening)
        queues = [Queue(name, connection=redis) for name in sorted(names)]
        counts = {queue.name: queue.count for queue in queues}
        waits = self._head_waits(redis, [queue for queue in queues if counts[queue.name]])
        for queue in queues:
            name = queue.name
            length.add_metric([name], float(counts[name]))
            waited.add_metric([name], waits.get(name, 0.0))
            started.add_metric([name], float(StartedJobRegistry(queue=queue).get_job_count(cleanup=False)))
            failed.add_metric([name], float(FailedJobRegistry(queue=queue).get_job_count(cleanup=False)))
            served.add_metric([name], float(listening[name]))
            used.add_metric([name], float(schedules[name]))
        return [length, waited, started, failed, served, used]

    def _head_waits(self, redis: Redis, queues: list[Queue]) -> dict[str, float]:
        """Seconds since the job at the head of each queue (the next one a worker takes) was
        enqueued: how far behind the queue's workers are, whatever its length. Asked only of
        non-empty queues, so an idle deployment pays no round trip for it."""
        heads = {queue.name: ids[0] for queue in queues if (ids := queue.get_job_ids(0, 1))}
        if not heads:
            return {}
        try:
            # JSONJob: restoring never unpickles (cronwork.serializer); one pipeline for all.
            jobs = JSONJob.fetch_many(list(heads.values()), connection=redis)
        except (NoSuchJobError, ValueError) as exc:  # a job hash written by hand: no figure
            log.warning("metrics: unreadable job at a queue head: %s", exc)
            return {}
        now = self.clock()
        return {
            name: max(now - job.enqueued_at.timestamp(), 0.0)
            for name, job in zip(heads, jobs, strict=True)
            if job is not None and job.enqueued_at is not None
        }

    def _processes(self, redis: Redis, workers: Sequence[BaseWorker]) -> list[Metric]:
        now = self.clock()
        families: list[Metric] = []
        beat_age = store.scheduler_heartbeat_age(redis, self.keys, now)
        up = _gauge(
            "scheduler_up",
            f"1 when a scheduler loop completed a pass within {store.SCHEDULER_HEARTBEAT_MAX_AGE:g} s "
            "(the /healthz limit)",
        )
        up.add_metric([], 1.0 if store.scheduler_alive(beat_age) else 0.0)
        families.append(up)
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
        pending = _gauge(
            "alerts_pending", "Admin alerts kept in Redis: no admin user yet, or the database was down"
        )
        pending.add_metric([], float(pending_count(redis, self.keys)))
        total = _gauge("workers", "Live RQ workers")
        total.add_metric([], float(len(workers)))
        return [*families, pending, total]


    def _auth(self, redis: Redis) -> list[Metric]:
        """Wrong credentials per scheme and lockouts per scope (cronwork.auth_failures, issue 13):
        a guesser at work shows here and in one WARNING line per failure."""
        failed, locked = auth_failures.totals(redis, self.keys)
        failures = CounterMetricFamily(
            "cronwork_auth_failures", "Wrong credentials presented to the ops surface", labels=["scheme"]
        )
        for scheme, count in failed.items():
            failures.add_metric([scheme], float(count))
        lockouts = CounterMetricFamily(
            "cronwork_auth_lockouts", "Clients or accounts locked out after failed logins", labels=["scope"]
        )
        for scope, count in locked.items():
            lockouts.add_metric([scope], float(count))
        return [failures, lockouts]


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
