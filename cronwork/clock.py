"""One clock for every scheduling decision: Redis's.

Every replica decides that a tick is due by comparing it with "now". Host clocks drift (NTP
keeps them within milliseconds on a good day, seconds on a bad one; a container can run far
off), and with leaderless dispatch the fastest clock would win every tick and push it early.
So "now" is Redis's `TIME`: the local clock, corrected by its measured offset to Redis, which
is re-measured regularly. The local clock still drives the sleeps (precise to well under a
millisecond); the dispatch script checks Redis's own clock at the push, so a tick is never
pushed before its time by Redis's clock whatever the offset estimate says.
"""

from __future__ import annotations

import logging
import time

from redis import Redis

log = logging.getLogger(__name__)

REMEASURE_EVERY = 30.0  # seconds between offset measurements
WARN_OFFSET = 1.0  # seconds: a host clock this far off Redis's is logged (once)
SAMPLES = 3  # round trips per measurement; the fastest one is kept


class RedisClock:
    """`time.time()` corrected to Redis's clock; call it like `time.time`."""

    def __init__(self, connection: Redis, remeasure_every: float = REMEASURE_EVERY) -> None:
        self.connection = connection
        self.remeasure_every = remeasure_every
        self.offset = 0.0  # Redis's clock minus this host's, seconds
        self._measured_at: float | None = None
        self._warned = False

    def __call__(self) -> float:
        return time.time() + self.offset

    def refresh(self) -> float:
        """Re-measure the offset when it is due; returns it (a Redis error propagates)."""
        if self._measured_at is None or time.monotonic() - self._measured_at >= self.remeasure_every:
            self.measure()
        return self.offset

    def measure(self) -> float:
        """Offset from the fastest of a few `TIME` round trips, taken at its midpoint."""
        best: tuple[float, float] | None = None
        for _ in range(SAMPLES):
            sent = time.time()
            seconds, micros = self.connection.time()
            received = time.time()
            sample = (received - sent, seconds + micros / 1e6 - (sent + received) / 2)
            if best is None or sample[0] < best[0]:
                best = sample
        assert best is not None
        self.offset = best[1]
        self._measured_at = time.monotonic()
        if abs(self.offset) > WARN_OFFSET and not self._warned:
            self._warned = True
            log.warning(
                "this host's clock is %.3fs %s Redis's; scheduling follows Redis's clock",
                abs(self.offset),
                "behind" if self.offset > 0 else "ahead of",
            )
        return self.offset
