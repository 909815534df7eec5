"""Failed logins to the ops surface, counted in Redis: per scheme, and the lockouts they caused.

The moving windows that decide a lockout are Flask-Limiter's (app.ops.limits); this module
keeps what outlives a window, so /metrics can show a guesser at work (issue 13): a counter
per scheme of wrong credentials, a counter per scope of lockouts begun, and a marker per
locked client or account that makes a lockout count once however many requests it refuses.
Every process shares the counts (nothing in process memory), like cronwork.stats.
"""

from __future__ import annotations

import hashlib
import math
from enum import StrEnum

from redis import Redis

from cronwork.keys import Keys


class Scheme(StrEnum):
    """How the wrong credentials came."""

    FORM = "form"  # the login page
    BASIC = "basic"  # HTTP Basic on a page or /rq
    BEARER = "bearer"  # the API's token


class Scope(StrEnum):
    """What a lockout holds back."""

    CLIENT = "client"  # one remote address, whatever account it tries
    ACCOUNT = "account"  # one user name (or the API token), from any address


def digest(subject: str) -> str:
    """A short stable name for a client or account in key names (user names are a guesser's text)."""
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def record_failure(redis: Redis, keys: Keys, scheme: Scheme) -> None:
    """Count one wrong credential."""
    redis.hincrby(keys.auth_failures, scheme.value, 1)


def record_lockout(redis: Redis, keys: Keys, scope: Scope, subject: str, seconds: float) -> bool:
    """Note that `subject` is locked out for `seconds`; True (and counted) when it was not already."""
    marker = keys.auth_lockout(scope.value, digest(subject))
    if not redis.set(marker, 1, nx=True, ex=max(1, math.ceil(seconds))):
        return False
    redis.hincrby(keys.auth_lockouts, scope.value, 1)
    return True


def totals(redis: Redis, keys: Keys) -> tuple[dict[str, int], dict[str, int]]:
    """Wrong credentials per scheme and lockouts begun per scope, zeros included (one round trip)."""
    schemes, scopes = [scheme.value for scheme in Scheme], [scope.value for scope in Scope]
    with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.auth_failures, schemes)
        pipe.hmget(keys.auth_lockouts, scopes)
        failures, lockouts = pipe.execute()
    return (
        {name: _count(value) for name, value in zip(schemes, failures, strict=True)},
        {name: _count(value) for name, value in zip(scopes, lockouts, strict=True)},
    )


def _count(raw: bytes | None) -> int:
    """A counter this module increments; 0 for anything else written there (garbage must not
    break /metrics)."""
    try:
        return max(int(raw or 0), 0)
    except ValueError:
        return 0
