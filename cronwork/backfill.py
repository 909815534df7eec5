"""Backfill: enqueue each tick of a schedule in a past range once, with its own `scheduled_for`.

One server-side script per batch does, for each tick, what the dispatch script does for a
scheduled one, so a backfilled run is indistinguishable from a scheduled run but for its
`trigger`:

- the tick is taken only if nothing has it: no claim (`Keys.claim`: a manual run, an earlier
  backfill) and no record, or a record of a run that never ran (`missed`, `paused`,
  `rate_limited`, `skipped_overlap`). A second backfill of the same range therefore enqueues
  nothing new, and a tick the scheduler handled is not run twice: one between the first tick
  the schedule ever handled (`first_tick` in the run stats, written by the dispatch script)
  and its `last_tick` that has no record was handled and its record trimmed (`keep_runs`, or
  expired), so it is left alone too ("trimmed");
- the schedule's `rate_limit` admits it or records it `rate_limited` (cronwork.ratelimit);
- the run job is pushed as rq's own atomic enqueue does (HSET of `Job.to_dict()`, RPUSH), its
  claim set and its `enqueued` record written (trigger `backfill`) in the same step.

The dispatch script skips claimed ticks, so a backfill reaching up to the present and the
scheduler cannot both enqueue the tick at the edge. What it cannot tell: the ticks of a
schedule handled only by a version before `first_tick` existed, whose records were trimmed
since, look never run. The overlap policy applies on the worker, as for any run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgpack  # type: ignore[import-untyped]  # no stubs; packb is all we use
from redis import Redis
from rq import Queue
from rq.utils import now, utcformat

from cronwork.dispatch import pairs
from cronwork.keys import CLAIM_TTL, RQ_JOB_PREFIX, Keys
from cronwork.ledger import LEDGER_TTL
from cronwork.ratelimit import ADMIT_LUA
from cronwork.runjob import RunJobHashes
from cronwork.runs import RunState, Trigger
from cronwork.serializer import json_queue
from cronwork.spec import ScheduleSpec
from cronwork.timing import fire_times

DEFAULT_MAX_TICKS = 1000  # ticks one backfill may enqueue, unless configured otherwise
BATCH = 200  # ticks per script call
# Records of runs that never ran: a backfill may take their tick.
NEVER_RAN = (RunState.MISSED, RunState.PAUSED, RunState.RATE_LIMITED, RunState.SKIPPED_OVERLAP)
TRIMMED = "trimmed"  # handled by the scheduler; its record is gone


class BackfillError(ValueError):
    """A backfill request that cannot be done; the message says why (nothing was enqueued)."""


# KEYS: ledger index, run stats, rq's set of queues, the schedule's rate window, last_tick hash
# ARGV: name, record prefix, attempts prefix, claim prefix, job key prefix, queue key, ledger
#   ttl, claim ttl, rate limit (0: none), rate window, states a tick may be taken from (comma
#   separated), enqueued_at (ISO-8601), enqueued_at (rq's format), the runs (msgpack:
#   {{tick, job id, {hash field, value, ...}}, ...})
# Returns {enqueued: {job id, ...}, taken: {tick, state, ...}, limited: {tick, retry_at, ...}}
BACKFILL = (
    ADMIT_LUA
    + """
local t = redis.call('TIME')
local at = tonumber(t[1]) + tonumber(t[2]) / 1000000
local name, recp, attp, claimp, jobp, queue = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl, claimttl, rate, window = ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local open = {}
for state in string.gmatch(ARGV[11], '[^,]+') do open[state] = true end
local enqueued, taken, limited = {}, {}, {}
-- Garbage in either reads as "unknown" (-1): nothing is taken as trimmed.
local first = tonumber(redis.call('HGET', KEYS[2], name .. ':first_tick') or '') or -1
local last = tonumber(redis.call('HGET', KEYS[5], name) or '') or -1
local function put(tick, ...)
  local rec = recp .. tick
  redis.call('DEL', rec, attp .. tick)
  redis.call('HSET', rec, 'schedule', name, 'tick', tick, ...)
  redis.call('EXPIRE', rec, ttl)
  redis.call('ZADD', KEYS[1], tick, tick)
  redis.call('EXPIRE', KEYS[1], ttl)
end
local stamp, rqstamp = ARGV[12], ARGV[13]
for _, run in ipairs(cmsgpack.unpack(ARGV[14])) do
  local tick, id = run[1], run[2]
  local state = redis.call('HGET', recp .. tick, 'state')
  if redis.call('EXISTS', claimp .. tick) == 1 then
    taken[#taken + 1] = tick
    taken[#taken + 1] = state or 'claimed'
  elseif state and not open[state] then
    taken[#taken + 1] = tick
    taken[#taken + 1] = state
  elseif not state and first >= 0 and tonumber(tick) >= first and tonumber(tick) <= last then
    taken[#taken + 1] = tick
    taken[#taken + 1] = 'trimmed'
  else
    local admitted, retry = true, 0
    if rate > 0 then admitted, retry = admit(KEYS[4], rate, window, at, id) end
    if not admitted then
      put(tick, 'state', 'rate_limited', 'job_id', id, 'trigger', 'backfill',
        'rate_limited_at', stamp, 'retry_at', string.format('%.6f', retry))
      redis.call('HINCRBY', KEYS[2], name .. ':runs:rate_limited', 1)
      limited[#limited + 1] = tick
      limited[#limited + 1] = string.format('%.6f', retry)
    else
      redis.call('SET', claimp .. tick, 'backfill', 'EX', claimttl)
      redis.call('DEL', jobp .. id)
      redis.call('HSET', jobp .. id, 'enqueued_at', rqstamp, unpack(run[3]))
      redis.call('RPUSH', queue, id)
      put(tick, 'state', 'enqueued', 'job_id', id, 'trigger', 'backfill', 'enqueued_at', stamp)
      enqueued[#enqueued + 1] = id
    end
  end
end
if #enqueued > 0 then redis.call('SADD', KEYS[3], queue) end
return {enqueued, taken, limited}
"""
)


@dataclass
class BackfillResult:
    """What a backfill did (or, dry, would do) over the ticks of its range."""

    ticks: list[int] = field(default_factory=list)  # every tick in the range, oldest first
    enqueued: list[str] = field(default_factory=list)  # run job ids pushed
    taken: dict[int, str] = field(default_factory=dict)  # tick → what has it (a state, or "claimed")
    rate_limited: dict[int, datetime] = field(default_factory=dict)  # tick → next run allowed at
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "count": len(self.ticks),
            "enqueued": len(self.enqueued),
            "already": len(self.taken),
            "rate_limited": len(self.rate_limited),
            "retry_at": max(self.rate_limited.values()).isoformat() if self.rate_limited else None,
            "ticks": [_iso(tick) for tick in self.ticks] if self.dry_run else None,
        }


def ticks_in_range(spec: ScheduleSpec, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The ticks of `spec` from `start` to `end`, both included; BackfillError beyond `limit`."""
    if end < start:
        raise BackfillError(f"'to' ({end.isoformat()}) is before 'from' ({start.isoformat()})")
    ticks: list[datetime] = []
    after = start - timedelta(microseconds=1)
    while True:
        batch = fire_times(spec.trigger, spec.zone, after, min(BATCH, limit + 1 - len(ticks)))
        ticks += [tick for tick in batch if tick <= end]
        if len(ticks) > limit:
            raise BackfillError(
                f"the range holds more than {limit} ticks of {spec.name!r}; backfill a shorter range"
            )
        if not batch or batch[-1] >= end:
            return ticks
        after = batch[-1]


class Backfiller:
    """Runs BACKFILL over the ticks of one schedule."""

    def __init__(self, connection: Redis, keys: Keys) -> None:
        self.connection = connection
        self.keys = keys
        self._script = connection.register_script(BACKFILL)

    def plan(self, spec: ScheduleSpec, ticks: Sequence[datetime]) -> BackfillResult:
        """What a backfill of `ticks` would do, without writing: which ticks are taken."""
        epochs = [int(tick.timestamp()) for tick in ticks]
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.run_stats, f"{spec.name}:first_tick")
            pipe.hget(self.keys.last_tick, spec.name)
            for epoch in epochs:
                pipe.exists(self.keys.claim(spec.name, epoch))
                pipe.hget(self.keys.run_record(spec.name, epoch), "state")
            first_raw, last_raw, *replies = pipe.execute()
        first, last = _epoch(first_raw), _epoch(last_raw)
        result = BackfillResult(ticks=epochs, dry_run=True)
        for epoch, claimed, state in zip(epochs, replies[::2], replies[1::2], strict=True):
            text = state.decode() if state is not None else None
            if claimed:
                result.taken[epoch] = text or "claimed"
            elif text is not None and text not in NEVER_RAN:
                result.taken[epoch] = text
            elif text is None and 0 <= first <= epoch <= last:
                result.taken[epoch] = TRIMMED
        return result

    def run(self, spec: ScheduleSpec, ticks: Sequence[datetime]) -> BackfillResult:
        """Enqueue every tick of `ticks` that nothing has yet (see the module docstring)."""
        queue: Queue = json_queue(spec.queue, self.connection)
        hashes = RunJobHashes(self.connection, queue)
        result = BackfillResult(ticks=[int(tick.timestamp()) for tick in ticks])
        keys = [self.keys.ledger(spec.name), self.keys.run_stats, Queue.redis_queues_keys]
        keys += [self.keys.schedule_rate(spec.name), self.keys.last_tick]
        rate = spec.rate_limit
        stamp = now()
        for i in range(0, len(ticks), BATCH):
            runs = [
                [str(int(tick.timestamp())), self.keys.run_id(spec.name, int(tick.timestamp()))]
                + [hashes.fields(spec, tick, Trigger.BACKFILL)]
                for tick in ticks[i : i + BATCH]
            ]
            args = [
                spec.name,
                self.keys.run_record_prefix(spec.name),
                self.keys.attempts_prefix(spec.name),
                self.keys.claim_prefix(spec.name),
                RQ_JOB_PREFIX,
                queue.key,
                LEDGER_TTL,
                CLAIM_TTL,
                rate.limit if rate else 0,
                rate.window if rate else 0,
                ",".join(str(state) for state in NEVER_RAN),
                stamp.isoformat(),
                utcformat(stamp),
                msgpack.packb(runs, use_bin_type=False),
            ]
            enqueued, taken, limited = cast(list[Any], self._script(keys=keys, args=args))
            result.enqueued += [job_id.decode() for job_id in enqueued]
            result.taken.update({int(tick): state.decode() for tick, state in pairs(taken)})
            result.rate_limited.update(
                {int(tick): datetime.fromtimestamp(float(retry), UTC) for tick, retry in pairs(limited)}
            )
        return result


def _epoch(raw: bytes | None) -> int:
    """A stored tick, or -1 when there is none or it is not a number (as the script reads it)."""
    try:
        return int(float(raw)) if raw is not None else -1
    except ValueError:
        return -1


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
