"""Server-side records of ops logins, so that a session can end (issue 13).

Flask's session is a signed cookie: it cannot be taken back, and a copy made before logout kept
working for its whole life. The cookie now carries only a random session id (Flask-Login's user
id, app.ops.auth); this module keeps the login itself in Redis: who, a proof of the credentials
it was made with, when it started. Logout deletes it; it expires after SESSION_IDLE_TIMEOUT
without a request (the key's TTL, renewed by each one) and SESSION_LIFETIME after the login
whatever happens; a changed ADMIN_USER or ADMIN_PASSWORD no longer matches its proof.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from redis import Redis

from cronwork.keys import Keys


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True)
class SessionStore:
    """The ops logins of one app: start, load (which renews the idle time) and end."""

    redis: Redis
    keys: Keys
    idle: float  # seconds without a request before the session ends
    lifetime: float  # seconds after the login at which it ends regardless
    clock: Callable[[], float] = field(default=time.time)

    def start(self, user: str, proof: str) -> str:
        """Record a new login; returns its id (what the cookie carries)."""
        session_id = secrets.token_urlsafe(32)
        key = self.keys.ops_session(session_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"user": user, "proof": proof, "started": repr(self.clock())})
            pipe.pexpire(key, _ms(min(self.idle, self.lifetime)))
            pipe.execute()
        return session_id

    def load(self, session_id: str, proof: str) -> str | None:
        """The user of a live session made with the current credentials, else None (and it is
        deleted when it outlived its lifetime or its credentials)."""
        key = self.keys.ops_session(session_id)
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(key))  # bytes replies (cronwork.connection)
        record = {k.decode(): v.decode() for k, v in raw.items()}
        if not record:
            return None  # logged out, idle too long, or never existed
        try:
            left = float(record["started"]) + self.lifetime - self.clock()
            user, stored = record["user"], record["proof"]
        except (KeyError, ValueError):
            left, user, stored = 0.0, "", ""
        if left <= 0 or not hmac.compare_digest(stored.encode(), proof.encode()):
            self.redis.delete(key)
            return None
        self.redis.pexpire(key, _ms(min(self.idle, left)))
        return user

    def end(self, session_id: str) -> None:
        """Logout: the id stops working everywhere, cookie copies included."""
        self.redis.delete(self.keys.ops_session(session_id))
