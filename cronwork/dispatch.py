"""Handing due occurrences to their queues: one server-side script per batch, no leader.

Any scheduler replica may dispatch any due template. For each one the script checks that the
template's score in rq-scheduler's set is still the one the replica planned from (the fence:
whoever handles a template moves its score forward, so a second replica, a stale plan or a
replay finds it moved and does nothing), then in the same atomic step:

- moves the template to its next tick (ZADD XX GT, never backwards) or removes a one-off;
- for every planned tick newer than the schedule's `last_tick` and not taken by a manual run
  or a backfill: pushes the run job exactly as rq's own atomic enqueue does (HSET of
  `Job.to_dict()`, RPUSH; rq.scripts.UNIQUE_ENQUEUE_SCRIPT) and writes the run's `enqueued`
  record, or writes its `missed` / `paused` record, or, when the schedule's `rate_limit` has
  no room left in its window (cronwork.ratelimit), its `rate_limited` record;
- raises `last_tick`, so a tick is never handled twice whatever a re-sync does to the score;
- trims the schedule's history to its `keep_runs` newest runs: the records, attempts, RQ job
  hashes, results and finished-registry entries of older runs that ended well (or were missed
  or paused) are deleted; a failed run, or one still queued or running, is left to its TTL
  (a failed run stays requeueable in RQ's failed registry until its failure TTL).

The push time, and so the run's `enqueued_at` and `lag`, is Redis's clock (`TIME`) at the
push, the same instant a MONITOR of the queue sees; never the start of the Python pass. `lag`
is measured from the run's due instant: its tick plus its `jitter` (both in the record). A
template whose planned runs are still ahead of that clock is left for a later pass (a
replica whose host clock runs fast), so `lag` is never negative: no run is pushed early.

This is the `enqueued` transition of a scheduled run (cronwork.runs documents the others);
its fields are the ones `RunWriter.enqueued` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack  # type: ignore[import-untyped]  # no stubs; packb is all we use
from redis import Redis
from redis.exceptions import NoScriptError
from rq import Queue
from rq.results import Result

from cronwork.keys import RQ_JOB_PREFIX, RQ_SCHEDULER_SET, Keys
from cronwork.ledger import LEDGER_TTL
from cronwork.ratelimit import ADMIT_LUA, RateLimit
from cronwork.runs import RunState

BATCH = 200  # templates per script call: each call holds Redis for ~1-2 ms at most

_PRUNABLE = (
    RunState.SUCCEEDED,
    RunState.SKIPPED_OVERLAP,
    RunState.MISSED,
    RunState.PAUSED,
    RunState.RATE_LIMITED,
    RunState.CANCELLED,
)

# KEYS: rq-scheduler's set, last_tick hash, rq's set of queues, fired one-offs hash, run stats
# ARGV: job key prefix, result key prefix, ledger ttl, prunable states (comma separated), the
#   dispatching replica's name, the batch (msgpack: one binary-safe argument instead of ~50 per
#   occurrence, which redis-py would encode one by one): a list of templates, each
#   {member, planned score, name, next score ('' = one-off: remove), keep_runs, paused,
#    ledger index, record prefix, attempts prefix, manual-claim prefix, queue key, finished
#    registry key, {missed ticks}, {{tick, job id, {hash field, value, ...}, due}, ...},
#    rate limit (0: none), rate window (s), rate key, canceled registry key}
# Returns {enqueued: {job id, lag, ...}, missed: {name, tick, ...}, moved, pruned,
#          paused: {name, tick, ...}, early, limited: {name, tick, ...}}
DISPATCH = (
    ADMIT_LUA
    + """
local t = redis.call('TIME')
local sec, usec = tonumber(t[1]), tonumber(t[2])
local at = sec + usec / 1000000

local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end
local days = math.floor(sec / 86400)
local rest = sec - days * 86400
local y, mo, d = civil(days)
local clock = string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06d', y, mo, d,
  math.floor(rest / 3600), math.floor(rest % 3600 / 60), rest % 60, usec)
local iso, rqiso = clock .. '+00:00', clock .. 'Z'

local jobp, resultp, ttl, replica = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local prunable = {}
for state in string.gmatch(ARGV[4], '[^,]+') do prunable[state] = true end
local enqueued, missed, paused_ticks, limited = {}, {}, {}, {}
local moved, pruned, early = 0, 0, 0
local queues = {}

for _, tpl in ipairs(cmsgpack.unpack(ARGV[6])) do
  local member, planned, name, nxt, keep, paused = tpl[1], tpl[2], tpl[3], tpl[4], tpl[5], tpl[6]
  local index, recp, attp, claimp, queue, finished = tpl[7], tpl[8], tpl[9], tpl[10], tpl[11], tpl[12]
  local newest = -1
  local rate, window, ratekey, canceled = tonumber(tpl[15]), tonumber(tpl[16]), tpl[17], tpl[18]
  for _, run in ipairs(tpl[14]) do newest = math.max(newest, tonumber(run[4])) end
  local score = redis.call('ZSCORE', KEYS[1], member)
  if not score or tonumber(score) ~= planned then
    moved = moved + 1
  elseif newest > at then
    -- Planned by a replica whose clock runs ahead of Redis's: never push before it is due.
    early = early + 1
  else
    local last = tonumber(redis.call('HGET', KEYS[2], name) or '-1')
    local high = last
    local function fresh(tick)
      local n = tonumber(tick)
      if n <= last or redis.call('EXISTS', claimp .. tick) == 1 then return false end
      if n > high then high = n end
      return true
    end
    local function put(tick, ...)
      local rec = recp .. tick
      -- Replace, never merge (HWM makes the tick fresh; a record there is a leftover).
      redis.call('DEL', rec, attp .. tick)
      redis.call('HSET', rec, 'schedule', name, 'tick', tick, ...)
      redis.call('EXPIRE', rec, ttl)
      redis.call('ZADD', index, tick, tick)
    end
    local stat = name .. ':'
    for _, tick in ipairs(tpl[13]) do
      if fresh(tick) then
        put(tick, 'state', 'missed', 'missed_at', iso)
        redis.call('HINCRBY', KEYS[5], stat .. 'runs:missed', 1)
        missed[#missed + 1] = name
        missed[#missed + 1] = tick
      end
    end
    for _, run in ipairs(tpl[14]) do
      local tick, id = run[1], run[2]
      if fresh(tick) then
        if paused then
          put(tick, 'state', 'paused', 'paused_at', iso)
          redis.call('HINCRBY', KEYS[5], stat .. 'runs:paused', 1)
          paused_ticks[#paused_ticks + 1] = name
          paused_ticks[#paused_ticks + 1] = tick
        else
          local admitted, retry = true, 0
          if rate > 0 then admitted, retry = admit(ratekey, rate, window, at, id) end
          local jitter = tonumber(run[4]) - tonumber(tick)
          if not admitted then
            put(tick, 'state', 'rate_limited', 'job_id', id, 'trigger', 'schedule',
              'rate_limited_at', iso, 'retry_at', string.format('%.6f', retry))
            redis.call('HINCRBY', KEYS[5], stat .. 'runs:rate_limited', 1)
            limited[#limited + 1] = name
            limited[#limited + 1] = tick
          else
            redis.call('HSET', jobp .. id, 'enqueued_at', rqiso, unpack(run[3]))
            redis.call('RPUSH', queue, id)
            queues[queue] = true
            local lag = string.format('%.6f', at - tonumber(run[4]))
            put(tick, 'state', 'enqueued', 'job_id', id, 'trigger', 'schedule', 'enqueued_at', iso,
              'lag', lag, 'scheduler', replica)
            redis.call('HSET', KEYS[5], stat .. 'lag', lag)
            enqueued[#enqueued + 1] = id
            enqueued[#enqueued + 1] = lag
          end
          -- Only a jittered schedule's records carry it: no bytes added to every other run.
          if jitter > 0 then redis.call('HSET', recp .. tick, 'jitter', string.format('%.3f', jitter)) end
        end
      end
    end
    if nxt == '' then
      redis.call('ZREM', KEYS[1], member)
      if high > last then redis.call('HSET', KEYS[4], name, high) end
    else
      redis.call('ZADD', KEYS[1], 'XX', 'GT', nxt, member)
    end
    if high > last then
      redis.call('HSET', KEYS[2], name, high)
      redis.call('EXPIRE', index, ttl)
      -- The first tick this schedule ever handled: a backfill knows a tick between it and
      -- last_tick without a record was handled and its record trimmed (cronwork.backfill).
      if last < 0 then redis.call('HSETNX', KEYS[5], stat .. 'first_tick', high) end
    end
    local excess = redis.call('ZCARD', index) - keep
    if excess > 0 then
      local popped = redis.call('ZPOPMIN', index, excess)
      -- Reports say when a day reaches back past what is kept.
      redis.call('HSET', KEYS[5], stat .. 'trimmed_through', popped[#popped])
      for k, tick in ipairs(popped) do
        if k % 2 == 1 then
          local rec = recp .. tick
          local fields = redis.call('HMGET', rec, 'state', 'job_id')
          if fields[1] and prunable[fields[1]] then
            redis.call('DEL', rec, attp .. tick)
            if fields[2] then
              redis.call('DEL', jobp .. fields[2], resultp .. fields[2])
              redis.call('ZREM', finished, fields[2])
              -- A cancelled run (overlap = "cancel_other") sits in rq's canceled registry,
              -- which rq 3.0 never cleans.
              redis.call('ZREM', canceled, fields[2])
            end
            pruned = pruned + 1
          end
        end
      end
    end
  end
end
for queue in pairs(queues) do redis.call('SADD', KEYS[3], queue) end
return {enqueued, missed, moved, pruned, paused_ticks, early, limited}
"""
)


@dataclass(frozen=True)
class PlannedRun:
    """One run job to push: its tick, id and the HSET arguments of its RQ job hash."""

    tick: int
    job_id: str
    hash_args: Sequence[Any]
    due: float | None = None  # epoch it is due: the tick plus its jitter (None: the tick)


@dataclass(frozen=True)
class PlannedTemplate:
    """What a replica plans for one due template, fenced by the score it planned from."""

    name: str
    member: str  # the template's id in rq-scheduler's set
    planned_score: float
    next_score: float | None  # None: a one-off, removed once handled
    keep_runs: int
    paused: bool
    queue_key: str
    finished_key: str
    canceled_key: str
    missed: Sequence[int] = ()
    runs: Sequence[PlannedRun] = ()
    rate_limit: RateLimit | None = None


@dataclass
class Dispatched:
    """What the scripts did: runs pushed (job id, lag in s), ticks recorded missed."""

    enqueued: list[tuple[str, float]] = field(default_factory=list)
    missed: list[tuple[str, int]] = field(default_factory=list)
    moved: int = 0  # templates another replica (or an earlier pass) had handled already
    pruned: int = 0  # old runs deleted to keep each schedule's history at keep_runs
    paused: list[tuple[str, int]] = field(default_factory=list)  # ticks recorded paused
    early: int = 0  # templates left alone: a planned run is still ahead of Redis's clock
    rate_limited: list[tuple[str, int]] = field(default_factory=list)  # ticks refused by rate_limit


class Dispatcher:
    """Runs the DISPATCH script over planned templates, in batches, in one round trip."""

    def __init__(self, connection: Redis, keys: Keys, replica: str) -> None:
        self.connection = connection
        self.keys = keys
        self._script = connection.register_script(DISPATCH)
        self._keys = [
            RQ_SCHEDULER_SET,
            keys.last_tick,
            Queue.redis_queues_keys,
            keys.oneoffs_fired,
            keys.run_stats,
        ]
        self._head: list[Any] = [
            RQ_JOB_PREFIX,
            Result.get_key(""),
            LEDGER_TTL,
            ",".join(str(state) for state in _PRUNABLE),
            replica,
        ]

    def dispatch(self, templates: Sequence[PlannedTemplate]) -> Dispatched:
        """Prepare and send at once (a pass called at its instant)."""
        return self.send(self.prepare(templates))

    def prepare(self, templates: Sequence[PlannedTemplate]) -> list[list[Any]]:
        """The scripts' arguments, packed: done ahead of the instant, with the plan."""
        return [self._args(templates[i : i + BATCH]) for i in range(0, len(templates), BATCH)]

    def send(self, batches: Sequence[Sequence[Any]]) -> Dispatched:
        """Run the script over prepared batches: one round trip for all of them."""
        out = Dispatched()
        for reply in self._evalsha(batches):
            enqueued, missed, moved, pruned, paused, early, limited = cast(list[Any], reply)
            out.enqueued += [(id_.decode(), float(lag)) for id_, lag in pairs(enqueued)]
            out.missed += [(name.decode(), int(tick)) for name, tick in pairs(missed)]
            out.moved += int(moved)
            out.pruned += int(pruned)
            out.paused += [(name.decode(), int(tick)) for name, tick in pairs(paused)]
            out.early += int(early)
            out.rate_limited += [(name.decode(), int(tick)) for name, tick in pairs(limited)]
        return out

    def _evalsha(self, batches: Sequence[Sequence[Any]]) -> list[Any]:
        """EVALSHA of every batch in one pipeline. Not through redis-py's Script on a pipeline,
        which first sends SCRIPT EXISTS: a round trip between the instant and the push. A
        Redis that lost its script cache (a restart) answers NOSCRIPT, which changes nothing:
        those batches are sent again through the Script, which loads it."""
        if not batches:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for args in batches:
                pipe.execute_command("EVALSHA", self._script.sha, len(self._keys), *self._keys, *args)
            replies = pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                replies[i] = self._script(keys=self._keys, args=batches[i])
            elif isinstance(reply, Exception):
                raise reply
        return replies

    def _args(self, templates: Sequence[PlannedTemplate]) -> list[Any]:
        keys = self.keys
        batch = [
            [
                t.member,
                t.planned_score,
                t.name,
                "" if t.next_score is None else t.next_score,
                t.keep_runs,
                t.paused,
                keys.ledger(t.name),
                keys.run_record_prefix(t.name),
                keys.attempts_prefix(t.name),
                keys.claim_prefix(t.name),
                t.queue_key,
                t.finished_key,
                [str(tick) for tick in t.missed],
                [
                    [str(run.tick), run.job_id, run.hash_args, run.tick if run.due is None else run.due]
                    for run in t.runs
                ],
                t.rate_limit.limit if t.rate_limit else 0,
                t.rate_limit.window if t.rate_limit else 0,
                keys.schedule_rate(t.name),
                t.canceled_key,
            ]
            for t in templates
        ]
        # Redis's Lua cmsgpack predates msgpack's bin type: text and bytes both go as raw.
        return [*self._head, msgpack.packb(batch, use_bin_type=False)]


def pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    """A flat script reply (a, b, a, b, …) as (a, b) pairs; the backfill script replies so too."""
    return list(zip(flat[::2], flat[1::2], strict=True))
