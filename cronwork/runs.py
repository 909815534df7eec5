"""The run lifecycle: the states of one occurrence and the one writer of its record.

A run is one occurrence (schedule, tick). Its record (cronwork.ledger) changes only through
the named transitions of `RunWriter`: enqueued (by the schedule, by hand, by a requeue),
missed, paused, started, finished. A transition replaces the outcome fields of the previous
state instead of merging into them, so a run that failed, was retried and then succeeded
shows no stale error.

Attempts are fenced: `started` gives the attempt a token and writes it into the record (and
into the overlap lock when the schedule has `overlap = "skip"`); `finished` writes only while
that token is still the record's, so a stale attempt (an orphaned work horse, a retry's
predecessor) can never overwrite the newer attempt's outcome or release its lock. Attempt
numbers and `requeued_at` are derived at start from what the record holds, so they come out
right whichever tool requeued the run (Cronwork, `rq requeue`, rq-dashboard).
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


# KEYS: record, index, attempts, overlap lock ('' when the schedule allows overlap), run stats
# ARGV: token, started_at, worker, job_id, enqueued_at, lock ttl (0: no lock), name, tick,
#       ledger ttl, start latency (s)
# Returns {1, attempt}, {0, holder of the overlap lock} or {2, state} when the run already
# ended well: a horse that recorded its success and died before rq committed the job's status
# leaves rq to retry (or fail) a job that must not run again.
START = """
local rec = KEYS[1]
local prev = redis.call('HGET', rec, 'state')
if prev == 'succeeded' or prev == 'skipped_overlap' then return {2, prev} end
local acquired, holder = 1, false
if ARGV[6] ~= '0' then
  if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'EX', ARGV[6]) then
    acquired, holder = 0, redis.call('GET', KEYS[4])
  end
end
if prev == 'failed' or prev == 'timed_out' or prev == 'abandoned' then
  -- Requeued by a tool that does not write records (rq requeue, rq-dashboard).
  redis.call('HSET', rec, 'requeued_at', ARGV[5])
end
redis.call('HDEL', rec, 'ended_at', 'duration', 'result', 'error_type', 'error')
local attempt = redis.call('LLEN', KEYS[3]) + 1
redis.call('HSET', rec, 'schedule', ARGV[7], 'tick', ARGV[8], 'state', 'running', 'token', ARGV[1],
  'started_at', ARGV[2], 'worker', ARGV[3], 'job_id', ARGV[4], 'attempt', attempt)
redis.call('EXPIRE', rec, ARGV[9])
-- Back in the index if the dispatch trim dropped it while it waited (the trim owns the size).
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[9])
if attempt == 1 and redis.call('HGET', rec, 'trigger') ~= 'manual' then
  redis.call('HSET', KEYS[5], ARGV[7] .. ':start_latency', ARGV[10])
end
if acquired == 0 then return {0, holder} end
return {1, attempt}
"""

# KEYS: record, attempts, overlap lock (or ''), failure streak, alerted, run stats
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
if ARGV[1] == 'token' then
  if token ~= ARGV[2] then return {0, 0} end
else
  if ended then return {0, state} end
  if ARGV[1] == 'owner' and state == 'running' and worker ~= ARGV[2] then return {0, 0} end
end
if KEYS[3] ~= '' and token and redis.call('GET', KEYS[3]) == token then redis.call('DEL', KEYS[3]) end
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
    ) -> tuple[StartKind, int | str | None]:
        """An attempt begins: (STARTED, attempt number); (HELD, holder's token) when the
        schedule's overlap lock is held by another run's attempt; (DONE, state) when the run
        already ended well and must not run again."""
        lock = self.keys.overlap_lock(name) if overlap_ttl else ""
        keys = [self.ledger.run_key(name, tick), self.keys.ledger(name), self.ledger.attempts_key(name, tick)]
        args: list[str | float] = [token, at.isoformat(), worker, job_id, (enqueued_at or at).isoformat()]
        args += [overlap_ttl, name, tick, LEDGER_TTL, round(at.timestamp() - tick, 6)]
        code, value = cast(list[Any], self._start(keys=[*keys, lock, self.keys.run_stats], args=args))
        text = value.decode() if isinstance(value, bytes) else None
        if code == 1:
            return StartKind.STARTED, int(value)
        return (StartKind.HELD, text) if code == 0 else (StartKind.DONE, text)

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
        ]
        entry = json.dumps({**attempt_entry, "state": str(state)}) if attempt_entry is not None else ""
        args: list[str | int] = [str(guard), guard_value, json.dumps(encoded), entry, outcome, LEDGER_TTL]
        args += [name, str(state), "1" if state.is_final else "0", *_end_stats(fields)]
        written, detail = cast(list[Any], self._finish(keys=keys, args=args))
        if written:
            return Finish(current=True, streak=int(detail))
        ended = RunState(detail.decode()) if isinstance(detail, bytes) else None
        return Finish(current=False, ended_as=ended)
