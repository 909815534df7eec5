"""Once-per-period claims in Redis: `SET key 1 NX EX ttl`, pipelined, released on failure.

A claim is taken before the notification it guards is committed; if the commit fails the
claim is deleted again, so a failed run never eats a warning. SET NX is atomic, so two runs
at the same time never both win (the seeds' EXISTS-then-SETEX let both through).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from redis import Redis

DAY_SECONDS = 86_400


def warning_key(task_id: int, level: int) -> str:
    """The seeds' dedup key of a task warning (no prefix: shared with the seed systems)."""
    return f"warning_sent:{task_id}:{level}"


def setpoint_alert_key(room_id: int, metric: str, hour_epoch: int) -> str:
    """Dedup key of one setpoint alert: a room, a metric, the hour the readings belong to."""
    return f"setpoint_alert:{room_id}:{metric}:{hour_epoch}"


# One script call claims a whole page of keys: a pipeline of SET NX costs ~25 µs of
# client-side work per key (0.8 s for the 32k warnings of the 100k-task benchmark); the script
# costs one argument list. Returns the 1-based positions of the keys it set.
CLAIM_MANY = """
local won = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, '1', 'NX', 'EX', ARGV[1]) then won[#won + 1] = i end
end
return won
"""


def claim(redis: Redis, keys: Sequence[str], ttl: int = DAY_SECONDS) -> list[str]:
    """Claim every key that is free, atomically in one round trip; returns the keys this call won."""
    if not keys:
        return []
    won = redis.register_script(CLAIM_MANY)(keys=list(keys), args=[ttl])
    return [keys[i - 1] for i in won]


def release(redis: Redis, keys: Sequence[str]) -> None:
    """Give claims back (their guarded work was not committed)."""
    if keys:
        redis.delete(*keys)


@contextmanager
def claimed(redis: Redis, keys: Sequence[str], ttl: int = DAY_SECONDS) -> Iterator[list[str]]:
    """Claim `keys`; yield those won; release them if the block does not complete.

    Releases on any exit by exception, a job timeout included: a warning sent twice is
    better than one never sent.
    """
    won = claim(redis, keys, ttl)
    completed = False
    try:
        yield won
        completed = True
    finally:
        if not completed:
            release(redis, won)
