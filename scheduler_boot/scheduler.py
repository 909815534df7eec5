"""The scheduler loop: an rq-scheduler subclass that enqueues each occurrence exactly once.

What it changes in rq-scheduler (docs/design.md, "What rq-scheduler gets wrong"):
- a due Cronwork template is never enqueued itself: each occurrence (name, tick) becomes a
  fresh RQ job `<prefix>-<name>-<tick>`, pushed with its record and the template moved to the
  next tick by one server-side script (cronwork.dispatch) fenced by the template's score, so
  any number of replicas, a stale plan or a crash between steps never enqueue it twice;
- there is no leader on that path: every replica plans each pass shortly before its instant
  and fires at the instant, so when one dies the others handle the next tick on time;
- the next fire time is computed from the tick (zone-aware, anchored), never from "now";
- it sleeps until the earliest due score (capped), not a fixed poll;
- a Redis outage is waited out with backoff, logged once, instead of exiting.
Foreign scheduled jobs (an app's one-off `enqueue_at`) still go through rq-scheduler, by the
replica holding the housekeeping lock (owner token, 3 s TTL; rq-scheduler's has no owner).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from uuid import uuid4

from redis import Redis, WatchError
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq_scheduler import Scheduler
from rq_scheduler.utils import get_next_scheduled_time

from cronwork import store
from cronwork.clock import RedisClock
from cronwork.dispatch import Dispatched, Dispatcher, PlannedRun, PlannedTemplate
from cronwork.jobdata import DECODE_ERRORS, UndecodableJob, fetch_checked
from cronwork.keys import RQ_SCHEDULER_SET, Keys
from cronwork.misfire import decide
from cronwork.runjob import RunJobHashes
from cronwork.runs import Trigger
from cronwork.scripts import ACQUIRE_OR_EXTEND, COMPARE_AND_DELETE
from cronwork.serializer import JSONJob, json_queue
from cronwork.spec import ScheduleSpec

log = logging.getLogger(__name__)

LOCK_TTL = 3.0  # seconds; a dead replica's housekeeping lock is free again this soon
MAX_SLEEP = 1.0  # seconds between passes at most
PLAN_MARGIN = 0.005  # seconds a pass is planned ahead of its instant at least
MAX_PLAN_AHEAD = 2.0  # seconds at most (a plan made early reads pauses and definitions early)
PLAN_COST_GUESS = 1e-4  # seconds per template, until a pass measured it
FOREIGN_WAIT = 0.1  # seconds a replica without the lock waits while foreign jobs are due
EARLY_RETRY = 0.001  # seconds before retrying a pass Redis's clock found early
LOGGED_RUNS = 50  # runs of one pass logged one by one; beyond, one summary line
# Waits between passes while Redis is away: 0.1 s doubling up to OUTAGE_BACKOFF_MAX, so the
# loop is back at most 1 s after Redis is (a ping a second costs nothing; at 5 s the ticks of
# the first seconds after a restart were pushed up to 3 s late, issue 14's chaos runs).
OUTAGE_BACKOFF_MAX = 1.0
OUTAGE_BACKOFF = ExponentialBackoff(cap=OUTAGE_BACKOFF_MAX, base=0.1)


@dataclass
class Plan:
    """One pass worked out ahead of its instant `at`."""

    at: float
    templates: list[PlannedTemplate] = field(default_factory=list)
    batches: list[list[Any]] = field(default_factory=list)  # the scripts' arguments, packed
    orphans: list[str] = field(default_factory=list)  # due templates without a definition
    foreign: list[str] = field(default_factory=list)  # due scheduled jobs that are not ours


class CronworkScheduler(Scheduler):
    """rq-scheduler with leaderless, fenced dispatch of occurrences and zone-aware ticks."""

    def __init__(
        self,
        connection: Redis,
        keys: Keys,
        interval: float = MAX_SLEEP,
        lock_ttl: float = LOCK_TTL,
        clock: Callable[[], float] | None = None,
        name: str | None = None,
    ) -> None:
        name = name or uuid4().hex
        super().__init__(connection=connection, interval=interval, name=name, job_class=JSONJob)
        self.keys = keys
        self.lock_ttl = lock_ttl
        # Redis's clock (cronwork.clock); tests pass their own.
        self.clock: Callable[[], float] = clock if clock is not None else RedisClock(connection)
        self._token = self.name
        self._acquire = connection.register_script(ACQUIRE_OR_EXTEND)
        self._release = connection.register_script(COMPARE_AND_DELETE)
        self._stop_requested = False
        self._queues: dict[str, Queue] = {}
        self._hashes: dict[str, RunJobHashes] = {}
        self._specs: dict[str, tuple[bytes, ScheduleSpec]] = {}
        self.dispatcher = Dispatcher(connection, keys, self.name)
        self._plan_cost = PLAN_COST_GUESS  # seconds of planning per due template, measured

    # -- housekeeping lock --------------------------------------------------------------------

    def acquire_lock(self) -> bool:
        """Take (or keep) the housekeeping lock: its holder alone enqueues foreign scheduled
        jobs, whose rq-scheduler enqueue is not atomic. Cronwork's occurrences need no lock."""
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
        plan = self.plan(self.clock())
        return self.fire(plan)

    def plan(self, at: float) -> Plan:
        """Everything due by `at`, worked out before `at`: the decisions, the run jobs built.

        Nothing is written: the scripts of `fire` check each template's score again, so a plan
        made early, or made by two replicas at once, is safe to fire."""
        due = self.connection.zrangebyscore(RQ_SCHEDULER_SET, 0, at, withscores=True)
        ours: list[tuple[str, float]] = []
        foreign: list[str] = []
        for raw_id, score in due:
            job_id = raw_id.decode()
            name = self.keys.name_from_template_id(job_id)
            if name is None:
                foreign.append(job_id)
            else:
                ours.append((name, score))
        plan = Plan(at=at, foreign=foreign)
        if ours:
            specs = self._load_specs([name for name, _ in ours])
            paused = store.paused_names(self.connection, self.keys)
            at_dt = datetime.fromtimestamp(at, UTC)
            for name, score in ours:
                spec = specs.get(name)
                if spec is None:
                    plan.orphans.append(name)
                    continue
                plan.templates.append(self._plan_template(spec, score, name in paused, at_dt))
            plan.batches = self.dispatcher.prepare(plan.templates)
        return plan

    def fire(self, plan: Plan) -> list[str]:
        """Dispatch a plan (the push itself), then log and do the housekeeping; returns the
        ids of the run jobs pushed."""
        return [job_id for job_id, _ in self._fire(plan).enqueued]

    def _fire(self, plan: Plan) -> Dispatched:
        done = self.dispatcher.send(plan.batches)
        for name in plan.orphans:
            # A template without a definition cannot be computed; the next sync removes it.
            log.warning("orphan template schedule=%s: unscheduled until the next sync", name)
            self.connection.zrem(RQ_SCHEDULER_SET, self.keys.template_id(name))
        self._log(plan, done)
        if plan.foreign and self.acquire_lock():
            for job_id in plan.foreign:
                self._enqueue_foreign(job_id)
        return done

    def _beat(self) -> None:
        offset = self.clock.offset if isinstance(self.clock, RedisClock) else None
        store.beat_scheduler(self.connection, self.keys, self.name, self.clock(), offset)

    def _plan_template(self, spec: ScheduleSpec, score: float, paused: bool, at: datetime) -> PlannedTemplate:
        # The score is the next tick's due instant (its tick plus its jitter, spec.score_of).
        decision = decide(spec, spec.tick_of(score), at)
        if decision.unlisted_misses:
            log.warning("schedule=%s missed %d more ticks (not listed)", spec.name, decision.unlisted_misses)
        queue = self._run_queue(spec.queue)
        hashes = self._hashes.get(spec.queue)
        if hashes is None:
            hashes = self._hashes[spec.queue] = RunJobHashes(self.connection, queue)
        runs = [
            PlannedRun(
                tick=int(tick.timestamp()),
                job_id=self.keys.run_id(spec.name, int(tick.timestamp())),
                hash_args=() if paused else hashes.fields(spec, tick, Trigger.SCHEDULE),
                due=spec.score_of(tick),
            )
            for tick in decision.runs
        ]
        return PlannedTemplate(
            name=spec.name,
            member=self.keys.template_id(spec.name),
            planned_score=score,
            next_score=None if decision.next_tick is None else spec.score_of(decision.next_tick),
            keep_runs=spec.keep_runs,
            paused=paused,
            queue_key=queue.key,
            finished_key=queue.finished_job_registry.key,
            canceled_key=queue.canceled_job_registry.key,
            missed=[int(t.timestamp()) for t in decision.missed],
            runs=runs,
            rate_limit=spec.rate_limit,
        )

    def _log(self, plan: Plan, done: Dispatched) -> None:
        for name, tick in done.missed:
            log.warning("missed schedule=%s tick=%s", name, datetime.fromtimestamp(tick, UTC).isoformat())
        if len(done.enqueued) <= LOGGED_RUNS:
            names = {run.job_id: t.name for t in plan.templates for run in t.runs}
            for job_id, lag in done.enqueued:
                log.info("enqueued schedule=%s job_id=%s lag=%.4fs", names.get(job_id), job_id, lag)
        else:
            lags = sorted(lag for _, lag in done.enqueued)
            log.info("enqueued %d runs lag min=%.4fs max=%.4fs", len(lags), lags[0], lags[-1])
        for name, tick in done.rate_limited[:LOGGED_RUNS]:
            log.warning(
                "rate_limited schedule=%s tick=%s", name, datetime.fromtimestamp(tick, UTC).isoformat()
            )
        if len(done.rate_limited) > LOGGED_RUNS:
            log.warning("rate-limited ticks recorded: %d", len(done.rate_limited))
        for name, tick in done.paused[:LOGGED_RUNS]:
            log.info("paused schedule=%s tick=%s", name, datetime.fromtimestamp(tick, UTC).isoformat())
        if len(done.paused) > LOGGED_RUNS:
            log.info("paused ticks recorded: %d", len(done.paused))
        if done.moved:
            log.debug("%d templates were handled by another replica", done.moved)

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

        Left due, it would be fetched at every pass and, as the earliest score, make every
        replica pass again at once: a busy loop. Remembering its id in memory
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

    def _load_specs(self, names: list[str] | None = None) -> dict[str, ScheduleSpec]:
        """The registered specs of `names` (default: all), as the last sync wrote them, parsed
        once per stored definition: a pass reads only the definitions of the templates due."""
        if names is None:
            names = [name.decode() for name in self.connection.hkeys(self.keys.definitions)]
        specs: dict[str, ScheduleSpec] = {}
        for name, raw in store.raw_definitions(self.connection, self.keys, names).items():
            cached = self._specs.get(name)
            if cached is None or cached[0] != raw:
                cached = (raw, store.Definition.decode(raw).to_spec())
                self._specs[name] = cached
            specs[name] = cached[1]
        return specs

    def _run_queue(self, name: str) -> Queue:
        """The run queue `name`, made once (rq's Queue() resolves its serializer each time; not
        `_queue`, which rq-scheduler's Scheduler uses)."""
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = json_queue(name, self.connection)
        return queue

    # -- the loop ---------------------------------------------------------------------------

    def next_instant(self) -> float:
        """When the next pass is due: the earliest scheduled score when it is close enough to
        be planned ahead of, else an interval from now (the loop looks again then)."""
        first = self.connection.zrange(RQ_SCHEDULER_SET, 0, 0, withscores=True)
        latest = self.clock() + float(self._interval)
        if first and first[0][1] <= latest + MAX_PLAN_AHEAD:
            return float(first[0][1])
        return latest

    def _install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM finish the current pass, then exit cleanly."""

        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("scheduler name=%s stopping on signal %s", self.name, signum)
            self._stop_requested = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def run(self, burst: bool = False) -> None:
        """Run passes until stopped; survives Redis outages.

        Each pass is planned shortly before its instant (reads, decisions, run jobs built) and
        fired at the instant: the push itself is one script call. Every replica does the same;
        the scripts' fence lets exactly one of them handle each template, so when one dies the
        others handle the next tick on time."""
        self.register_birth()
        self._install_signal_handlers()
        outage_since: float | None = None
        failures = 0
        try:
            while not self._stop_requested:
                try:
                    if burst:
                        self.enqueue_jobs()
                        self._beat()
                        break
                    self._pass()
                    if outage_since is not None:
                        log.info("redis is back after %.1fs", time.monotonic() - outage_since)
                        outage_since, failures = None, 0
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.error("redis unreachable, retrying with backoff: %s", exc)
                    self._lock_acquired = False
                    self._sleep_until(self.clock() + OUTAGE_BACKOFF.compute(failures))
                    failures += 1
        finally:
            try:
                self.remove_lock()
                store.forget_scheduler(self.connection, self.keys, self.name)
                self.register_death()
            except (RedisConnectionError, RedisTimeoutError):
                log.warning("could not register death: redis unreachable")

    def _pass(self) -> None:
        """Wait for the next instant; plan it ahead of time, by an estimate of how long planning
        the templates due then takes (their count × the cost per template measured so far,
        doubled, at most MAX_PLAN_AHEAD), so the push itself lands at the instant."""
        self.heartbeat()
        if isinstance(self.clock, RedisClock):
            self.clock.refresh()
        at = self.next_instant()
        due = int(self.connection.zcount(RQ_SCHEDULER_SET, 0, at))
        wake = at - min(PLAN_MARGIN + 2 * due * self._plan_cost, MAX_PLAN_AHEAD)
        if wake - self.clock() > float(self._interval):
            self._sleep_until(self.clock() + float(self._interval))  # look again before then
            self._beat()
            return
        self._sleep_until(wake)
        if self._stop_requested:
            return
        started = time.perf_counter()
        plan = self.plan(at)
        if plan.templates:
            per_template = (time.perf_counter() - started) / len(plan.templates)
            self._plan_cost = (self._plan_cost + per_template) / 2
        self._sleep_until(at)
        if self._stop_requested:
            return
        if self._fire(plan).early:
            time.sleep(EARLY_RETRY)  # Redis's clock is a little behind the estimate: retry soon
        if plan.foreign and not self._lock_acquired:
            # Due foreign jobs are the lock holder's; left due they are the earliest score, and
            # this replica would pass again at once until the holder (or, if it died, the next
            # one within LOCK_TTL) handles them.
            self._sleep_until(self.clock() + FOREIGN_WAIT)
        self._beat()

    def _sleep_until(self, instant: float) -> None:
        """Sleep until `instant` on the scheduler's clock, in short slices so a stop signal
        is honoured promptly; the last slice ends at the instant (time.sleep is precise to
        well under a millisecond here)."""
        while not self._stop_requested:
            left = instant - self.clock()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))
