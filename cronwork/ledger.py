"""The per-tick record of every schedule: what happened to each occurrence.

One Redis hash per run (`<prefix>:run:<name>:<tick>`) with an index sorted set per schedule
(score = tick epoch), and a list of the run's attempts. Trimmed to each schedule's
`keep_runs` by cronwork.dispatch and expiring, so it never grows without bound. This module
stores and decodes records; what they say is written only through the run transitions
(cronwork.dispatch for a scheduled run's enqueue, cronwork.runs.RunWriter for the others).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from cronwork.keys import Keys

# Hard bound of any schedule's index (the largest keep_runs): each schedule's own keep_runs
# trims it far below, with the runs behind it (cronwork.dispatch).
LEDGER_CAP = 10_000
LEDGER_TTL = 30 * 24 * 3600  # seconds a record lives without being touched


class Ledger:
    """Read and write tick records of schedules."""

    def __init__(self, connection: Redis, keys: Keys, cap: int = LEDGER_CAP) -> None:
        self.connection = connection
        self.keys = keys
        self.cap = cap

    def run_key(self, name: str, tick: int) -> str:
        return self.keys.run_record(name, tick)

    def put(
        self,
        name: str,
        tick: int,
        fields: Mapping[str, Any],
        pipeline: Pipeline | None = None,
    ) -> None:
        """Store `fields` in the record of (name, tick); JSON-encodes non-string values.

        Storage only: production code changes records through cronwork.runs.RunWriter (test
        fixtures use this to lay out a history)."""
        pipe = pipeline if pipeline is not None else self.connection.pipeline(transaction=False)
        key = self.run_key(name, tick)
        mapping: dict[FieldT, EncodableT] = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()
        }
        mapping.setdefault("tick", str(tick))
        mapping["schedule"] = name
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, LEDGER_TTL)
        index = self.keys.ledger(name)
        pipe.zadd(index, {str(tick): tick})
        pipe.expire(index, LEDGER_TTL)
        # A safety bound only; the hashes of ticks it drops expire on their own TTL.
        pipe.zremrangebyrank(index, 0, -self.cap - 1)
        if pipeline is None:
            pipe.execute()

    def attempts_key(self, name: str, tick: int) -> str:
        return self.keys.attempts(name, tick)

    def put_attempt(self, name: str, tick: int, fields: Mapping[str, Any]) -> None:
        """Append one attempt's outcome (storage only, like `put`)."""
        key = self.attempts_key(name, tick)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.rpush(key, json.dumps(dict(fields)))
            pipe.expire(key, LEDGER_TTL)
            pipe.execute()

    def attempts(self, name: str, tick: int) -> list[dict[str, Any]]:
        """Every recorded attempt of a run, oldest first."""
        return [json.loads(raw) for raw in self.connection.lrange(self.attempts_key(name, tick), 0, -1)]

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` records of a schedule, newest first."""
        # Replies are bytes: the clients are made without decode_responses (app/extensions.py).
        ticks = cast(list[bytes], self.connection.zrevrange(self.keys.ledger(name), 0, max(limit, 1) - 1))
        with self.connection.pipeline(transaction=False) as pipe:
            for tick in ticks:
                pipe.hgetall(self.run_key(name, int(tick)))
            rows = pipe.execute()
        return [decode_record(row) for row in rows if row]


# Typed fields of a record; every other field is text, except `result` (JSON when it parses).
_INT_FIELDS = frozenset({"tick", "attempt"})
_FLOAT_FIELDS = frozenset({"lag", "duration", "jitter", "retry_at"})  # retry_at: epoch seconds
_INTERNAL_FIELDS = frozenset({"streak_counted"})


def decode_record(row: Mapping[bytes, bytes]) -> dict[str, Any]:
    """Decode a stored record into plain values (numbers typed by field, never guessed)."""
    out: dict[str, Any] = {}
    for raw_key, raw_value in row.items():
        key, value = raw_key.decode(), raw_value.decode(errors="replace")
        if key in _INTERNAL_FIELDS:
            continue
        try:
            if key in _INT_FIELDS:
                out[key] = int(float(value))
            elif key in _FLOAT_FIELDS:
                out[key] = float(value)
            elif key == "result":
                out[key] = json.loads(value)
            else:
                out[key] = value
        except ValueError:
            out[key] = value
    out["tick"] = int(out.get("tick", 0))
    return out
