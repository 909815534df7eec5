"""A schedule's rate limit (`rate_limit = "5/1m"`): at most N runs enqueued in any window.

The window is a sliding log in Redis (`Keys.schedule_rate`): a sorted set of the run job ids
admitted, scored by Redis's clock (`TIME`) at admission. Admission is decided inside the
scripts that enqueue, in the same atomic step as the push, whatever the trigger: the dispatch
script (scheduled ticks and their catch-up), the manual-run script and the backfill script
all splice `ADMIT_LUA`. A run refused there is never enqueued; its record says
`rate_limited` and when the next run is allowed (`retry_at`).

Why not Flask-Limiter's `limits` (already a dependency of the ops surface): its moving window
is its own script and round trip. Called before the dispatch script, a replica whose dispatch
then finds the template moved by another replica would have used up a slot for nothing; the
fenced dispatch has to admit and push in one script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis

from cronwork.timing import TriggerError, format_duration, parse_duration

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
MAX_RATE_WINDOW = 7 * 24 * 3600  # seconds: a window longer than a week is a schedule, not a limit


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` runs enqueued in any `window` seconds."""

    limit: int
    window: int

    @classmethod
    def parse(cls, text: Any) -> RateLimit:
        """ "5/1m" → RateLimit(5, 60); ValueError with the expected form otherwise."""
        if not isinstance(text, str):
            raise TypeError(f'expected a string like "5/1m", got {type(text).__name__}')
        match = _RATE_RE.match(text)
        if match is None:
            raise ValueError(f'invalid rate limit {text!r}: expected "<runs>/<window>", like "5/1m"')
        limit = int(match.group(1))
        if limit < 1:
            raise ValueError(f"invalid rate limit {text!r}: at least 1 run per window")
        try:
            window = int(parse_duration(match.group(2)).total_seconds())
        except TriggerError as exc:
            raise ValueError(f"invalid rate limit {text!r}: {exc}") from None
        if window > MAX_RATE_WINDOW:
            raise ValueError(f"invalid rate limit {text!r}: the window is at most 7d")
        return cls(limit=limit, window=window)

    @property
    def text(self) -> str:
        """The form the schedule file uses: "5/1m"."""
        return f"{self.limit}/{format_duration(self.window)}"


# Lua: `admit(key, limit, window, now, member)` → true, or false and the epoch at which the
# oldest run in the window leaves it (the next run allowed then). Spliced into the scripts
# that enqueue (cronwork.dispatch, cronwork.backfill, MANUAL below).
ADMIT_LUA = """
local function admit(key, limit, window, now, member)
  local trimmed = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if type(trimmed) == 'table' and trimmed.err then
    -- Not a sorted set: something else wrote our key. Start the window afresh rather than
    -- fail the whole script (a dispatch batch holds up to 200 schedules).
    redis.log(redis.LOG_WARNING, 'cronwork: ' .. key .. ' was not a sorted set; reset')
    redis.call('DEL', key)
  end
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return false, tonumber(oldest[2]) + window
  end
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, window + 1)
  return true, 0
end
"""

# KEYS: the schedule's rate window. ARGV: limit, window, run job id.
# Returns {1, now} when admitted, {0, now, retry_at} when not (epochs as text).
_ADMIT_ONE = (
    ADMIT_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ok, retry = admit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now, ARGV[3])
if ok then return {1, string.format('%.6f', now)} end
return {0, string.format('%.6f', now), string.format('%.6f', retry)}
"""
)


@dataclass(frozen=True)
class Admission:
    """Whether a run may be enqueued now, by Redis's clock."""

    admitted: bool
    at: datetime
    retry_at: datetime | None = None  # when refused: when the next run is allowed


def admit_one(connection: Redis, key: str, rate: RateLimit, member: str) -> Admission:
    """Admit one run (a manual run) into the window, by Redis's clock."""
    script = connection.register_script(_ADMIT_ONE)
    reply = cast(list[bytes], script(keys=[key], args=[rate.limit, rate.window, member]))
    at = datetime.fromtimestamp(float(reply[1]), UTC)
    if int(reply[0]) == 1:
        return Admission(admitted=True, at=at)
    return Admission(admitted=False, at=at, retry_at=datetime.fromtimestamp(float(reply[2]), UTC))


def release_one(connection: Redis, key: str, member: str) -> None:
    """Give a slot back: the run admitted as `member` was not enqueued after all."""
    connection.zrem(key, member)
