"""The per-tick record of every schedule: what happened to each occurrence.

One Redis hash per run (`<prefix>:run:<name>:<tick>`) with an index sorted set per schedule
(score = tick epoch). The scheduler writes `enqueued`/`missed`/`paused`; workers add outcomes.
Capped per schedule and expiring, so it never grows without bound.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from cronwork.keys import Keys

LEDGER_CAP = 500  # ticks kept per schedule
LEDGER_TTL = 30 * 24 * 3600  # seconds a record lives without being touched


class Ledger:
    """Read and write tick records of schedules."""

    def __init__(self, connection: Redis, keys: Keys, cap: int = LEDGER_CAP) -> None:
        self.connection = connection
        self.keys = keys
        self.cap = cap

    def run_key(self, name: str, tick: int) -> str:
        return f"{self.keys.prefix}:run:{name}:{tick}"

    def record(
        self,
        name: str,
        tick: int,
        fields: Mapping[str, Any],
        pipeline: Pipeline | None = None,
    ) -> None:
        """Merge `fields` into the record of (name, tick); JSON-encodes non-string values."""
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
        # Keep the newest `cap` ticks; the hashes of older ones expire on their own TTL.
        pipe.zremrangebyrank(index, 0, -self.cap - 1)
        if pipeline is None:
            pipe.execute()

    def attempts_key(self, name: str, tick: int) -> str:
        return f"{self.keys.prefix}:attempts:{name}:{tick}"

    def record_attempt(
        self, name: str, tick: int, fields: Mapping[str, Any], pipeline: Pipeline | None = None
    ) -> None:
        """Append one attempt's outcome (a run may take several with retries)."""
        key = self.attempts_key(name, tick)
        pipe = pipeline if pipeline is not None else self.connection.pipeline(transaction=False)
        pipe.rpush(key, json.dumps(dict(fields)))
        pipe.expire(key, LEDGER_TTL)
        if pipeline is None:
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
        return [_decode(row) for row in rows if row]


def _decode(row: Mapping[bytes, bytes]) -> dict[str, Any]:
    """Decode a record: JSON where it parses (numbers, objects), text otherwise."""
    out: dict[str, Any] = {}
    for raw_key, raw_value in row.items():
        value = raw_value.decode()
        try:
            out[raw_key.decode()] = json.loads(value)
        except json.JSONDecodeError:
            out[raw_key.decode()] = value
    out["tick"] = int(out["tick"])
    return out
