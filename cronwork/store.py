"""Typed read/write of the scheduling state Cronwork keeps in Redis (one owner per key)."""

from __future__ import annotations

from typing import cast

from redis import Redis

from cronwork.keys import Keys


def fired_oneoffs(connection: Redis, keys: Keys) -> dict[str, int]:
    """One-offs the scheduler has handled: name → tick epoch (see Keys.oneoffs_fired)."""
    # Bytes: the clients are made without decode_responses.
    raw = cast(dict[bytes, bytes], connection.hgetall(keys.oneoffs_fired))
    return {name.decode(): int(tick) for name, tick in raw.items()}
