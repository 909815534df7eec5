"""The run lifecycle: the states of one occurrence and the one writer of its record.

A run is one occurrence (schedule, tick). Its record (cronwork.ledger) changes only through
the named transitions of `RunWriter`: enqueued (by the schedule, by hand, by a requeue),
missed, paused, started, finished. A transition replaces the outcome fields of the previous
state instead of merging into them, so a run that failed, was retried and then succeeded
shows no stale error.

Attempts are fenced: `started` gives the attempt a token and writes it into the record (and
into the overlap lock unless the schedule has `overlap = "allow"`); `finished` writes only while
that token is still the record's, so a stale attempt (an orphaned work horse, a retry's
predecessor) can never overwrite the newer attempt's outcome or release its lock. Attempt
numbers and `requeued_at` are derived at start from what the record holds, so they come out
right whichever tool requeued the run (Cronwork, `rq requeue`, rq-dashboard).

The policies that wait (`buffer_one`, `cancel_other`; the waiting side is jobs.overlap): a run
that finds the lock held takes the schedule's one waiting place in the same `started` script
and is `buffered`; `waited` moves it to `running` when the lock is free, the waiting place
giving it priority over any later run; `cancel_requested` marks the holder's record before
its job is stopped, so the worker that stops it records `cancelled`, not `failed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from rq.job import Job

from cronwork.keys import Keys
from cronwork.ledger import LEDGER_TTL, Ledger

MAX_TEXT = 500  # characters of a result or error kept in the ledger
# Seconds the waiting place of a buffer_one / cancel_other schedule lives unless its waiter
# renews it (every look at the lock does): a dead waiter blocks later runs this long at most.
WAITER_TTL = 5


class RunState(StrEnum):
    """What became of one occurrence."""

    ENQUEUED = "enqueued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    SKIPPED_OVERLAP = "skipped_overlap"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"
    MISSED = "missed"
    PAUSED = "paused"
    # Not enqueued: the schedule's rate_limit had no room left in its window (issue 14).
    RATE_LIMITED = "rate_limited"
    # overlap = "buffer_one": the run waits for the running one and starts when it ends.
    BUFFERED = "buffered"
    # overlap = "cancel_other": a newer run of the schedule stopped this one.
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Nothing more happens to the run unless an operator requeues it."""
        return self not in (RunState.ENQUEUED, RunState.RUNNING, RunState.RETRYING, RunState.BUFFERED)

    @property
    def is_failure(self) -> bool:
        """A final failure: it counts in the failure streak and alerts admins."""
        return self in (RunState.FAILED, RunState.TIMED_OUT, RunState.ABANDONED)


FINAL_FAILURES = frozenset(state for state in RunState if state.is_failure)


class Trigger(StrEnum):
    """Why a run was enqueued."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    BACKFILL = "backfill"


class Guard(StrEnum):
    """Which writer may finish a run (see FINISH)."""

    TOKEN = "token"  # the attempt itself: only while its token is the record's
    OWNER = "owner"  # the worker whose horse died: unless the run ended or another worker's runs
    OPEN = "open"  # whoever found the attempt abandoned: unless the run already ended


@dataclass(frozen=True)
class Finish:
    """How a transition to a final (or retrying) state went."""

    current: bool  # False: nothing was written (see `ended_as`)
    streak: int = 0  # final failures in a row of the schedule, after this one
    # Refused because the run had already ended so (its horse recorded the end, then died
    # before rq committed the job's status), not because a newer attempt owns it.
    ended_as: RunState | None = None

    @property
    def ended_well(self) -> bool:
        """The run had already succeeded (or been skipped): it must never run again."""
        return self.ended_as in (RunState.SUCCEEDED, RunState.SKIPPED_OVERLAP)


class StartKind(StrEnum):
    """How an attempt's start went."""

    STARTED = "started"  # the attempt owns the run; run the job
    HELD = "held"  # the schedule's overlap lock is held by another run: skip
    DONE = "done"  # the run already succeeded (or was skipped): never run it again
    BUFFERED = "buffered"  # the lock is held and this run took the waiting place: wait (`waited`)


class WaitKind(StrEnum):
    """What one look at the overlap lock found for a buffered run (see WAIT)."""

    RUNNING = "running"  # the lock is the run's now (record: running): run the job
    WAITING = "waiting"  # another run still holds it: look again
    PASSED_OVER = "passed_over"  # this run's waiting place lapsed and another run took it: skip
    STALE = "stale"  # the record is no longer this attempt's, or no longer buffered: stop


# What the START and WAIT scripts' reply codes mean.
_START_KINDS = {0: StartKind.HELD, 2: StartKind.DONE, 3: StartKind.BUFFERED}
_WAIT_KINDS = {1: WaitKind.RUNNING, 0: WaitKind.WAITING, 2: WaitKind.PASSED_OVER, 3: WaitKind.STALE}


def decode_streak(raw: bytes | str | None) -> int:
    """A failure streak as FINISH counts it (`Keys.failure_streak`); 0 when there is none, or
    when the key holds something that is not a count (garbage written into Redis must not
    break /metrics, the pages or the alerts)."""
    if raw is None:
        return 0
    try:
        return max(int(raw), 0)
    except ValueError:
        return 0


def failure_streak(connection: Redis, keys: Keys, name: str) -> int:
    """The schedule's current failure streak (final failures in a row, one per tick)."""
    return decode_streak(cast(bytes | None, connection.get(keys.failure_streak(name))))


def job_of_token(token: str) -> str:
    """The job id of the run an attempt token belongs to (`<job id>/<random>`)."""
    return token.split("/", 1)[0]


def tick_of_token(token: str) -> int | None:
    """The tick of the run an attempt token belongs to (`<prefix>-<name>-<tick>/<random>`)."""
    tail = job_of_token(token).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def schedule_of(job: Job) -> str | None:
    """The Cronwork schedule a run belongs to, from its meta (None for a foreign job)."""
    meta = job.meta if isinstance(job.meta, dict) else {}
    name = meta.get("cronwork_schedule")
    return name if isinstance(name, str) and name else None


def tick_of(job: Job) -> int | None:
    """The tick (epoch seconds) a run is for, from its meta."""
    meta = job.meta if isinstance(job.meta, dict) else {}
    tick = meta.get("tick")
    return tick if isinstance(tick, int) and not isinstance(tick, bool) else None


# Lines SQLAlchemy appends to the message of every database error: the statement, its
# parameters and a link. The driver's own message is the line that names the error.
_NOISE_PREFIXES = ("(Background on this error at:", "[SQL:", "[parameters:")


def error_fields(exc_string: str) -> dict[str, str]:
    """The error's type and message from a formatted traceback.

    The exception block is what follows the last indented traceback line; its first line is
    `module.Type: message`. Lines SQLAlchemy adds (statement, parameters, link) are dropped, so
    a database error shows the driver's message, not `(Background on this error at: …)`.
    """
    lines = exc_string.strip().splitlines()
    last_indented = max((i for i, line in enumerate(lines) if line.startswith(" ")), default=-1)
    block = [line for line in lines[last_indented + 1 :] if line.strip()]
    block = [line for line in block if not line.startswith(_NOISE_PREFIXES)] or block
    head = block[0] if block else ""
    error_type, _, message = head.partition(": ")
    if not message or " " in error_type:
        error_type, message = "Error", head
    message = " ".join([message, *block[1:]]).strip()
    return {"error_type": error_type.rsplit(".", 1)[-1][:100], "error": _clip(message)}


def result_text(value: Any) -> str:
    """A run's return value as the ledger keeps it: JSON text, clipped."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _clip(text)


def _end_stats(fields: Mapping[str, Any]) -> tuple[str, str]:
    """The run-stats values of a finished run: its end (epoch) and duration, '' when absent."""
    ended = fields.get("ended_at")
    try:
        ended_epoch = str(datetime.fromisoformat(ended).timestamp()) if isinstance(ended, str) else ""
    except ValueError:
        ended_epoch = ""
    duration = fields.get("duration")
    return ended_epoch, str(duration) if isinstance(duration, int | float) else ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


# KEYS: record, index, attempts, overlap lock ('' when the schedule allows overlap), run stats,
#       overlap waiter ('' when the schedule's policy never waits)
# ARGV: token, started_at, worker, job_id, enqueued_at, lock ttl (0: no lock), name, tick,
#       ledger ttl, start latency (s), waiter ttl
# Returns {1, attempt}, {0, holder of the overlap lock (or of the waiting place)}, {3, holder}
# when the run took the waiting place (record: buffered), or {2, state} when the run already
# ended well: a horse that recorded its success and died before rq committed the job's status
# leaves rq to retry (or fail) a job that must not run again.
START = """
local rec = KEYS[1]
local prev = redis.call('HGET', rec, 'state')
if prev == 'succeeded' or prev == 'skipped_overlap' then return {2, prev} end
local acquired, holder, buffered = 1, false, false
if ARGV[6] ~= '0' then
  local waiter = KEYS[6] ~= '' and redis.call('GET', KEYS[6])
  if waiter then
    -- One run already waits and the lock is promised to it (WAIT): a further run is skipped,
    -- even in the instant between the holder's end and the waiter taking the lock.
    acquired, holder = 0, redis.call('GET', KEYS[4]) or waiter
  elseif not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'EX', ARGV[6]) then
    holder = redis.call('GET', KEYS[4])
    if KEYS[6] ~= '' then
      redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[11])
      buffered = true
    else
      acquired = 0
    end
  end
end
if prev == 'failed' or prev == 'timed_out' or prev == 'abandoned' or prev == 'cancelled' then
  -- Requeued by a tool that does not write records (rq requeue, rq-dashboard).
  redis.call('HSET', rec, 'requeued_at', ARGV[5])
end
redis.call('HDEL', rec, 'ended_at', 'duration', 'result', 'error_type', 'error',
  'waiting_for', 'buffered_at', 'cancelled_by', 'cancel_requested_at')
local attempt = redis.call('LLEN', KEYS[3]) + 1
redis.call('HSET', rec, 'schedule', ARGV[7], 'tick', ARGV[8], 'state', 'running', 'token', ARGV[1],
  'started_at', ARGV[2], 'worker', ARGV[3], 'job_id', ARGV[4], 'attempt', attempt)
if buffered then
  -- Not started yet: WAIT sets state running and started_at when the lock is the run's.
  redis.call('HDEL', rec, 'started_at')
  redis.call('HSET', rec, 'state', 'buffered', 'buffered_at', ARGV[2],
    'waiting_for', string.match(holder, '^[^/]*'))
end
redis.call('EXPIRE', rec, ARGV[9])
-- Back in the index if the dispatch trim dropped it while it waited (the trim owns the size).
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[9])
if attempt == 1 and redis.call('HGET', rec, 'trigger') ~= 'manual' then
  redis.call('HSET', KEYS[5], ARGV[7] .. ':start_latency', ARGV[10])
end
if acquired == 0 then return {0, holder} end
if buffered then return {3, holder} end
return {1, attempt}
"""

# KEYS: record, overlap lock, overlap waiter
# ARGV: token, lock ttl, waiter ttl, started_at
# Returns {1, ''} when the lock is now the run's (record: running, started_at set), {0, holder}
# while another run holds it (the waiting place is renewed), {2, waiter} when the waiting place
# lapsed and another run took it, {3, ''} when the record is no longer this buffered attempt's.
WAIT = """
local cur = redis.call('HMGET', KEYS[1], 'token', 'state')
if cur[1] ~= ARGV[1] or cur[2] ~= 'buffered' then return {3, ''} end
local waiter = redis.call('GET', KEYS[3])
if waiter and waiter ~= ARGV[1] then return {2, waiter} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[4])
  return {1, ''}
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3])
return {0, redis.call('GET', KEYS[2])}
"""

# KEYS: record of the run holding the overlap lock
# ARGV: the holding attempt's token, job id of the run asking, requested_at
# Returns 1 when the holder's record was marked, 0 when that attempt no longer runs.
CANCEL = """
local cur = redis.call('HMGET', KEYS[1], 'token', 'state')
if cur[1] ~= ARGV[1] or cur[2] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'cancelled_by', ARGV[2], 'cancel_requested_at', ARGV[3])
return 1
"""

# KEYS: record, attempts, overlap lock (or ''), failure streak, alerted, run stats, overlap waiter
# ARGV: guard, guard value, JSON of the fields to set, JSON of the attempt entry ('' = none),
#       outcome ('success' | 'failure' | 'other'), ledger ttl, name, state, final ('1'/'0'),
#       ended_at epoch ('' = none), duration ('' = none)
# Returns {1, streak} when written; {0, 0} when a newer attempt owns the run, {0, state} when
# the run had already ended (only a writer without the attempt's token can find that).
FINISH = """
local rec = KEYS[1]
local cur = redis.call('HMGET', rec, 'token', 'worker', 'state')
local token, worker, state = cur[1], cur[2], cur[3]
local ended = state and state ~= 'enqueued' and state ~= 'running' and state ~= 'retrying'
  and state ~= 'buffered'
if ARGV[1] == 'token' then
  if token ~= ARGV[2] then return {0, 0} end
else
  if ended then return {0, state} end
  if ARGV[1] == 'owner' and (state == 'running' or state == 'buffered') and worker ~= ARGV[2] then
    return {0, 0}
  end
end
if KEYS[3] ~= '' and token and redis.call('GET', KEYS[3]) == token then redis.call('DEL', KEYS[3]) end
if KEYS[7] ~= '' and token and redis.call('GET', KEYS[7]) == token then redis.call('DEL', KEYS[7]) end
redis.call('HDEL', rec, 'ended_at', 'duration', 'result', 'error_type', 'error')
local fields = cjson.decode(ARGV[3])
for k, v in pairs(fields) do redis.call('HSET', rec, k, v) end
redis.call('EXPIRE', rec, ARGV[6])
if ARGV[4] ~= '' then
  local entry = cjson.decode(ARGV[4])
  entry['attempt'] = redis.call('LLEN', KEYS[2]) + 1
  redis.call('RPUSH', KEYS[2], cjson.encode(entry))
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  redis.call('HSET', rec, 'attempt', entry['attempt'])
end
if ARGV[9] == '1' then
  local prefix = ARGV[7] .. ':'
  redis.call('HINCRBY', KEYS[6], prefix .. 'runs:' .. ARGV[8], 1)
  if ARGV[11] ~= '' then redis.call('HSET', KEYS[6], prefix .. 'duration', ARGV[11]) end
  if ARGV[5] == 'success' and ARGV[10] ~= '' then
    redis.call('HSET', KEYS[6], prefix .. 'success_at', ARGV[10])
  end
end
local streak = 0
if ARGV[5] == 'success' then
  redis.call('DEL', KEYS[4], KEYS[5])
elseif ARGV[5] == 'failure' then
  -- A tick counts once in the streak, however often it was requeued and failed again.
  if redis.call('HSETNX', rec, 'streak_counted', '1') == 1 then
    streak = redis.call('INCR', KEYS[4])
  else
    streak = tonumber(redis.call('GET', KEYS[4]) or '0')
  end
end
return {1, streak}
"""


class RunWriter:
    """The one writer of run records: named transitions, each replacing the previous outcome."""

    def __init__(self, connection: Redis, keys: Keys) -> None:
        self.connection = connection
        self.keys = keys
        self.ledger = Ledger(connection, keys)
        self._start = connection.register_script(START)
        self._finish = connection.register_script(FINISH)
        self._wait = connection.register_script(WAIT)
        self._cancel = connection.register_script(CANCEL)

    # -- enqueue side: queued into the caller's transaction ---------------------------------

    def enqueued(
        self,
        pipe: Pipeline,
        name: str,
        tick: int,
        job_id: str,
        trigger: Trigger,
        at: datetime,
        lag: float,
    ) -> None:
        """A fresh run of (name, tick) was pushed to its queue (in `pipe`'s transaction)."""
        fields = {
            "state": RunState.ENQUEUED,
            "job_id": job_id,
            "trigger": trigger,
            "enqueued_at": at.isoformat(),
            "lag": lag,
        }
        self._replace(pipe, name, tick, fields)

    def requeued(self, pipe: Pipeline, name: str, tick: int, at: datetime) -> None:
        """A failed run went back to its queue: its outcome is cleared, its enqueue kept."""
        key = self.ledger.run_key(name, tick)
        pipe.hdel(key, "ended_at", "duration", "result", "error_type", "error", "worker")
        pipe.hset(key, mapping={"state": RunState.ENQUEUED, "requeued_at": at.isoformat()})
        pipe.expire(key, LEDGER_TTL)

    def missed(self, pipe: Pipeline, name: str, tick: int, at: datetime) -> None:
        """No scheduler handled the tick within its misfire grace."""
        self._replace(pipe, name, tick, {"state": RunState.MISSED, "missed_at": at.isoformat()})

    def paused(self, pipe: Pipeline, name: str, tick: int, at: datetime) -> None:
        """The tick came while the schedule was paused: nothing was enqueued."""
        self._replace(pipe, name, tick, {"state": RunState.PAUSED, "paused_at": at.isoformat()})

    def rate_limited(
        self,
        pipe: Pipeline,
        name: str,
        tick: int,
        job_id: str,
        trigger: Trigger,
        at: datetime,
        retry_at: datetime,
    ) -> None:
        """The run was not enqueued: the schedule's rate_limit had no room (the dispatch and
        backfill scripts write the same fields for the runs they refuse)."""
        fields = {
            "state": RunState.RATE_LIMITED,
            "job_id": job_id,
            "trigger": trigger,
            "rate_limited_at": at.isoformat(),
            "retry_at": f"{retry_at.timestamp():.6f}",
        }
        self._replace(pipe, name, tick, fields)
        pipe.hincrby(self.keys.run_stats, f"{name}:runs:{RunState.RATE_LIMITED}", 1)

    def _replace(self, pipe: Pipeline, name: str, tick: int, fields: Mapping[str, Any]) -> None:
        key = self.ledger.run_key(name, tick)
        pipe.delete(key, self.ledger.attempts_key(name, tick))
        self.ledger.put(name, tick, fields, pipe)

    # -- worker side: fenced -----------------------------------------------------------------

    def started(
        self,
        name: str,
        tick: int,
        token: str,
        job_id: str,
        worker: str,
        at: datetime,
        enqueued_at: datetime | None,
        overlap_ttl: int = 0,
        waiter_ttl: int = 0,
    ) -> tuple[StartKind, int | str | None]:
        """An attempt begins: (STARTED, attempt number); (HELD, holder's token) when the
        schedule's overlap lock (or its waiting place) is held by another run's attempt;
        (BUFFERED, holder's token) when `waiter_ttl` is set (buffer_one, cancel_other), the lock
        is held and this run took the waiting place; (DONE, state) when the run already ended
        well and must not run again."""
        lock = self.keys.overlap_lock(name) if overlap_ttl else ""
        waiter = self.keys.overlap_waiter(name) if overlap_ttl and waiter_ttl else ""
        keys = [self.ledger.run_key(name, tick), self.keys.ledger(name), self.ledger.attempts_key(name, tick)]
        args: list[str | float] = [token, at.isoformat(), worker, job_id, (enqueued_at or at).isoformat()]
        args += [overlap_ttl, name, tick, LEDGER_TTL, round(at.timestamp() - tick, 6), waiter_ttl]
        code, value = cast(list[Any], self._start(keys=[*keys, lock, self.keys.run_stats, waiter], args=args))
        text = value.decode() if isinstance(value, bytes) else None
        if code == 1:
            return StartKind.STARTED, int(value)
        return _START_KINDS[int(code)], text

    def waited(
        self, name: str, tick: int, token: str, at: datetime, overlap_ttl: int, waiter_ttl: int = WAITER_TTL
    ) -> tuple[WaitKind, str | None]:
        """One look at the overlap lock by the buffered attempt `token`: (RUNNING, None) when the
        lock is now its own and the record says running since `at`; (WAITING, holder's token),
        its waiting place renewed for `waiter_ttl` s; (PASSED_OVER, the new waiter's token);
        (STALE, None) when the record is no longer this buffered attempt's."""
        keys = [self.ledger.run_key(name, tick), self.keys.overlap_lock(name), self.keys.overlap_waiter(name)]
        args: list[str | int] = [token, overlap_ttl, waiter_ttl, at.isoformat()]
        code, value = cast(list[Any], self._wait(keys=keys, args=args))
        return _WAIT_KINDS[int(code)], value.decode() if isinstance(value, bytes) and value else None

    def cancel_requested(self, name: str, holder_token: str, by_job_id: str, at: datetime) -> bool:
        """A cancel_other run asks the attempt `holder_token` to stop: its record is marked
        (`cancelled_by`, `cancel_requested_at`) while that attempt still runs; False when it
        no longer does (nothing to stop)."""
        tick = tick_of_token(holder_token)
        if tick is None:
            return False
        key = self.ledger.run_key(name, tick)
        return bool(self._cancel(keys=[key], args=[holder_token, by_job_id, at.isoformat()]))

    def cancel_requested_by(self, name: str, tick: int) -> str | None:
        """The job id of the run that asked this run's running attempt to stop, if one did."""
        value = cast(bytes | None, self.connection.hget(self.ledger.run_key(name, tick), "cancelled_by"))
        return value.decode() if value else None

    def finished(
        self,
        name: str,
        tick: int,
        state: RunState,
        guard: Guard,
        guard_value: str,
        fields: Mapping[str, Any],
        attempt_entry: Mapping[str, Any] | None = None,
    ) -> Finish:
        """The attempt ended in `state`; `fields` replace the previous outcome fields."""
        outcome = "success" if state is RunState.SUCCEEDED else "failure" if state.is_failure else "other"
        encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        encoded["state"] = str(state)
        keys = [
            self.ledger.run_key(name, tick),
            self.ledger.attempts_key(name, tick),
            self.keys.overlap_lock(name),
            self.keys.failure_streak(name),
            self.keys.alerted(name),
            self.keys.run_stats,
            self.keys.overlap_waiter(name),
        ]
        entry = json.dumps({**attempt_entry, "state": str(state)}) if attempt_entry is not None else ""
        args: list[str | int] = [str(guard), guard_value, json.dumps(encoded), entry, outcome, LEDGER_TTL]
        args += [name, str(state), "1" if state.is_final else "0", *_end_stats(fields)]
        written, detail = cast(list[Any], self._finish(keys=keys, args=args))
        if written:
            return Finish(current=True, streak=int(detail))
        ended = RunState(detail.decode()) if isinstance(detail, bytes) else None
        return Finish(current=False, ended_as=ended)
