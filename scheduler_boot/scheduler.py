"""The scheduler loop: an rq-scheduler subclass that enqueues each occurrence exactly once.

What it changes in rq-scheduler (DESIGN.md, "Pitfalls we know"):
- a due Cronwork template is never enqueued itself: the occurrence (name, tick) is claimed
  and a fresh RQ job `<prefix>-<name>-<tick>` is enqueued, with the template rescheduled to
  the next tick from `timing.py`, all in one WATCHed transaction, so two schedulers, a lock
  lost mid-pass or a crash between steps can never enqueue an occurrence twice;
- the next fire time is computed from the tick (zone-aware, anchored), never from "now";
- the lock has an owner token and a short TTL (rq-scheduler's has no owner and lives
  interval + 10 s), so a standby takes over within seconds of a SIGKILL;
- it sleeps until the earliest due score (capped), not a fixed poll;
- a Redis outage is waited out with backoff, logged once, instead of exiting.
Foreign scheduled jobs (an app's one-off `enqueue_at`) still go through rq-scheduler.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from uuid import uuid4

from redis import Redis, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq_scheduler import Scheduler
from rq_scheduler.utils import get_next_scheduled_time

from cronwork import store
from cronwork.jobdata import DECODE_ERRORS, UndecodableJob, fetch_checked
from cronwork.keys import CLAIM_TTL, RQ_SCHEDULER_SET, Keys
from cronwork.misfire import Decision, decide
from cronwork.runjob import build_run_job
from cronwork.runs import RunWriter, Trigger
from cronwork.scripts import ACQUIRE_OR_EXTEND, COMPARE_AND_DELETE
from cronwork.serializer import JSONJob, json_queue
from cronwork.spec import ScheduleSpec

log = logging.getLogger(__name__)

LOCK_TTL = 3.0  # seconds; a dead scheduler's lock is free again this soon
MAX_SLEEP = 1.0  # seconds between passes at most
MIN_SLEEP = 0.002
BATCH = 200  # occurrences per transaction
OUTAGE_BACKOFF_MAX = 5.0


class CronworkScheduler(Scheduler):
    """rq-scheduler with per-occurrence claims, zone-aware ticks and an owned lock."""

    def __init__(
        self,
        connection: Redis,
        keys: Keys,
        interval: float = MAX_SLEEP,
        lock_ttl: float = LOCK_TTL,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
    ) -> None:
        name = name or uuid4().hex
        super().__init__(connection=connection, interval=interval, name=name, job_class=JSONJob)
        self.keys = keys
        self.runs = RunWriter(connection, keys)
        self.lock_ttl = lock_ttl
        self.clock = clock
        self._token = self.name
        self._acquire = connection.register_script(ACQUIRE_OR_EXTEND)
        self._release = connection.register_script(COMPARE_AND_DELETE)
        self._specs: dict[str, tuple[str, ScheduleSpec]] = {}
        self._stop_requested = False
        self._queues: dict[str, Queue] = {}

    # -- lock -------------------------------------------------------------------------------

    def acquire_lock(self) -> bool:
        """Take (or keep) the scheduler lock; True while this process is the active one."""
        ttl_ms = int(self.lock_ttl * 1000)
        self._lock_acquired = bool(self._acquire(keys=[self.keys.scheduler_lock], args=[self._token, ttl_ms]))
        return self._lock_acquired

    def remove_lock(self) -> None:
        """Release the lock if this process owns it."""
        if self._lock_acquired:
            self._release(keys=[self.keys.scheduler_lock], args=[self._token])
            self._lock_acquired = False

    # -- one pass ---------------------------------------------------------------------------

    def enqueue_jobs(self) -> list[str]:
        """Handle every template due now; returns the ids of the run jobs enqueued."""
        now = self.clock()
        due = self.connection.zrangebyscore(RQ_SCHEDULER_SET, 0, now, withscores=True)
        ours: list[tuple[str, float]] = []
        for raw_id, score in due:
            job_id = raw_id.decode()
            name = self.keys.name_from_template_id(job_id)
            if name is None:
                self._enqueue_foreign(job_id)
            else:
                ours.append((name, score))
        enqueued: list[str] = []
        if ours:
            specs = self._load_specs()
            paused = store.paused_names(self.connection, self.keys)
            now_dt = datetime.fromtimestamp(now, UTC)
            for start in range(0, len(ours), BATCH):
                enqueued += self._handle_batch(ours[start : start + BATCH], specs, paused, now_dt)
        return enqueued

    def _enqueue_foreign(self, job_id: str) -> None:
        """A scheduled job that is not ours: rq-scheduler's own behaviour, for a strict JSON job.

        One that does not decode (an old pickle, garbage, a meta that is not a JSON object) or
        whose rq-scheduler fields would make `enqueue_job` raise is never enqueued, unpickled or
        deleted: it is parked (`_park_foreign`). Before this, a meta that was not a dict made
        `enqueue_job` raise AttributeError and the scheduler exit at every start.
        """
        try:
            job = fetch_checked(self.connection, job_id)
            meta = job.meta
            if meta.get("queue_class_name"):
                # rq-scheduler's get_queue_for_job imports that dotted name: a module import
                # chosen by whoever can write to Redis. Cronwork only enqueues to JSON queues.
                raise UndecodableJob(job_id, "meta.queue_class_name is set (a class named by Redis data)")
            if not job.origin:
                raise UndecodableJob(job_id, "no origin queue")
            # What rq-scheduler's enqueue_job parses after it has already enqueued the job.
            int(meta.get("repeat") or 0)
            int(meta.get("interval") or 0)
            if meta.get("cron_string"):
                get_next_scheduled_time(meta["cron_string"], meta.get("use_local_timezone"))
        except NoSuchJobError:
            self.cancel(job_id)
            return
        except UndecodableJob as exc:
            self._park_foreign(job_id, str(exc))
            return
        except DECODE_ERRORS as exc:
            self._park_foreign(job_id, f"bad rq-scheduler meta ({type(exc).__name__}: {exc})"[:240])
            return
        self.enqueue_job(job)

    def _park_foreign(self, job_id: str, reason: str, park_for: float = 3600.0) -> None:
        """Keep a foreign job we will not enqueue in rq-scheduler's set, due `park_for` s later.

        Left due, it would be fetched at every pass and, as the earliest score, make
        `seconds_until_next_due` sleep MIN_SLEEP: a busy loop. Remembering its id in memory
        would still leave it due (same spin) and log it again in every replica and after every
        restart. Moving its score leaves the job hash untouched for an operator (the warning
        says why and when it was due), costs one write per job and hour, logs it once an hour
        at most across all replicas, and an app that schedules the id again simply replaces it.
        """
        now = self.clock()
        with self.connection.pipeline(transaction=True) as pipe:
            try:
                # WATCH: if the app re-schedules or rewrites the job meanwhile, its write wins.
                pipe.watch(RQ_SCHEDULER_SET, self.job_class.key_for(job_id))
                due = pipe.zscore(RQ_SCHEDULER_SET, job_id)
                if due is None or due > now:
                    return
                pipe.multi()
                pipe.zadd(RQ_SCHEDULER_SET, {job_id: now + park_for}, xx=True)
                pipe.execute()
            except WatchError:
                return  # changed meanwhile: the next pass looks at it again
        log.warning(
            "foreign scheduled job_id=%s due=%s not enqueued, looked at again in %.0fs: %s",
            job_id,
            datetime.fromtimestamp(due, UTC).isoformat(),
            park_for,
            reason,
        )

    def _load_specs(self) -> dict[str, ScheduleSpec]:
        """The registered specs (as written by the last sync), parsed once per definition hash."""
        specs: dict[str, ScheduleSpec] = {}
        for name, definition in store.definitions(self.connection, self.keys).items():
            cached = self._specs.get(name)
            if cached is None or cached[0] != definition.hash:
                cached = (definition.hash, definition.to_spec())
                self._specs[name] = cached
            specs[name] = cached[1]
        return specs

    def _handle_batch(
        self,
        batch: list[tuple[str, float]],
        specs: dict[str, ScheduleSpec],
        paused: set[str],
        now: datetime,
    ) -> list[str]:
        """Claim and enqueue a batch of occurrences in one WATCHed transaction."""
        decisions: list[tuple[ScheduleSpec, Decision]] = []
        for name, score in batch:
            spec = specs.get(name)
            if spec is None:
                # A template without a definition cannot be computed; the next sync removes it.
                log.warning("orphan template schedule=%s: unscheduled until the next sync", name)
                self.connection.zrem(RQ_SCHEDULER_SET, self.keys.template_id(name))
                continue
            decisions.append((spec, decide(spec, datetime.fromtimestamp(score, UTC), now)))
        # Missed ticks are claimed too, so a stale replica can never overwrite the ledger
        # record of a tick another scheduler did run.
        claims = [
            self.keys.claim(spec.name, int(tick.timestamp()))
            for spec, d in decisions
            for tick in (*d.runs, *d.missed)
        ]
        while True:
            try:
                with self.connection.pipeline(transaction=True) as pipe:
                    if claims:
                        pipe.watch(*claims)
                        taken = {c for c, hit in zip(claims, pipe.mget(claims), strict=True) if hit}
                    else:
                        taken = set()
                    pipe.multi()
                    enqueued = [
                        job_id
                        for spec, decision in decisions
                        for job_id in self._queue_template(pipe, spec, decision, paused, taken, now)
                    ]
                    pipe.execute()
                return enqueued
            except WatchError:
                # Another scheduler claimed one of these ticks meanwhile: re-read and retry.
                log.info("claim race, retrying batch of %d", len(decisions))

    def _queue_template(
        self,
        pipe: Any,
        spec: ScheduleSpec,
        decision: Decision,
        paused: set[str],
        taken: set[str],
        now: datetime,
    ) -> list[str]:
        """Queue the writes for one due template; returns the run ids it enqueues."""
        name = spec.name
        template_id = self.keys.template_id(name)
        if decision.next_tick is None:  # a one-off, handled now (run, missed or paused)
            pipe.zrem(RQ_SCHEDULER_SET, template_id)
            if handled := [*decision.runs, *decision.missed]:
                store.record_fired_oneoff(pipe, self.keys, name, int(max(handled).timestamp()))
        else:
            # GT: a slower replica working on an older tick can never move the template back.
            pipe.zadd(RQ_SCHEDULER_SET, {template_id: decision.next_tick.timestamp()}, xx=True, gt=True)
        if decision.unlisted_misses:
            log.warning("schedule=%s missed %d more ticks (not listed)", name, decision.unlisted_misses)
        for tick in decision.missed:
            if self._claim(pipe, name, tick, taken):
                self.runs.missed(pipe, name, int(tick.timestamp()), now)
                log.warning("missed schedule=%s tick=%s policy=%s", name, tick.isoformat(), spec.misfire)
        return [
            job_id
            for tick in decision.runs
            if (job_id := self._queue_run(pipe, spec, tick, paused, taken, now))
        ]

    def _claim(self, pipe: Any, name: str, tick: datetime, taken: set[str]) -> bool:
        """Queue the claim of (name, tick) unless someone holds it already."""
        claim = self.keys.claim(name, int(tick.timestamp()))
        if claim in taken:
            return False
        pipe.set(claim, self.name, ex=CLAIM_TTL)
        return True

    def _queue_run(
        self, pipe: Any, spec: ScheduleSpec, tick: datetime, paused: set[str], taken: set[str], now: datetime
    ) -> str | None:
        """Claim one occurrence and queue its run job (or its `paused` record)."""
        name, epoch = spec.name, int(tick.timestamp())
        if not self._claim(pipe, name, tick, taken):
            return None  # already handled by another scheduler (or an earlier pass)
        if name in paused:
            self.runs.paused(pipe, name, epoch, now)
            return None
        job_id = self.keys.run_id(name, epoch)
        job = build_run_job(self.connection, spec, tick, job_id, Trigger.SCHEDULE, self.job_class)
        self._run_queue(spec.queue).enqueue_job(job, pipeline=pipe)
        lag = round((now - tick).total_seconds(), 6)
        self.runs.enqueued(pipe, name, epoch, job_id, Trigger.SCHEDULE, now, lag)
        log.info("enqueued schedule=%s tick=%s job_id=%s lag=%.3fs", name, tick.isoformat(), job_id, lag)
        return job_id

    def _run_queue(self, name: str) -> Queue:
        """The run queue `name`, made once (rq's Queue() resolves its serializer each time; not
        `_queue`, which rq-scheduler's Scheduler uses)."""
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = json_queue(name, self.connection)
        return queue

    # -- the loop ---------------------------------------------------------------------------

    def seconds_until_next_due(self) -> float:
        """Sleep until the earliest scheduled score, capped to the interval."""
        first = self.connection.zrange(RQ_SCHEDULER_SET, 0, 0, withscores=True)
        if not first:
            return float(self._interval)
        return min(max(first[0][1] - self.clock(), MIN_SLEEP), float(self._interval))

    def _install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM finish the current pass, then exit cleanly."""

        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("scheduler name=%s stopping on signal %s", self.name, signum)
            self._stop_requested = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def run(self, burst: bool = False) -> None:
        """Run passes until stopped; survives Redis outages."""
        self.register_birth()
        self._install_signal_handlers()
        outage_since: float | None = None
        backoff = 0.1
        try:
            while not self._stop_requested:
                try:
                    self.heartbeat()
                    active = self.acquire_lock()
                    if active:
                        self.enqueue_jobs()
                        store.beat_scheduler(self.connection, self.keys, self.name, self.clock())
                    if outage_since is not None:
                        log.info("redis is back after %.1fs", time.monotonic() - outage_since)
                        outage_since, backoff = None, 0.1
                    if burst:
                        break
                    pause = self.seconds_until_next_due() if active else float(self._interval)
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.error("redis unreachable, retrying with backoff: %s", exc)
                    self._lock_acquired = False
                    pause, backoff = backoff, min(backoff * 2, OUTAGE_BACKOFF_MAX)
                self._sleep(pause)
        finally:
            try:
                self.remove_lock()
                self.register_death()
            except (RedisConnectionError, RedisTimeoutError):
                log.warning("could not register death: redis unreachable")

    def _sleep(self, seconds: float) -> None:
        """Sleep in short slices so a stop signal is honoured promptly."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))
