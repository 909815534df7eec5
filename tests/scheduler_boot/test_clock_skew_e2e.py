"""Scheduler replicas whose host clocks are off by seconds (libfaketime), on one Redis.

Every tick is decided and pushed by Redis's clock (cronwork/clock.py, cronwork/dispatch.py):
a replica running 2 s fast never pushes a tick before its time, a slow one never delays the
others, and together they still push each tick exactly once.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis

from bench import faketime
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from tests.conftest import Processes, wait_until
from tests.scheduler_boot.test_ha_e2e import EVERY_SECOND, executed_ticks

pytestmark = pytest.mark.slow

WINDOW = 7  # seconds of ticks checked per case


@pytest.fixture
def skewable(tmp_path: Path, process_env: dict[str, str]) -> None:
    if faketime.library() is None:
        if os.environ.get("CI"):
            raise RuntimeError("libfaketime missing: CI must run the clock-skew tests (`make test` installs it)")
        pytest.skip("CLOCK SKEW NOT TESTED: libfaketime missing (apt-get install faketime)")
    path = tmp_path / "schedule.toml"
    path.write_text(EVERY_SECOND)
    process_env["SCHEDULE_FILE"] = str(path)


def redis_now(redis: Redis) -> float:
    seconds, micros = redis.time()
    return seconds + micros / 1e6


def check_window(redis: Redis, processes: Processes, worker: object, since: float) -> list[dict[str, object]]:
    """Every tick after `since` pushed once, on or after its time by Redis's clock, run once."""
    ledger = Ledger(redis, Keys())
    newest = lambda: [r["tick"] for r in ledger.history("health_check", 1)] or [0]  # noqa: E731
    wait_until(lambda: newest()[0] >= since + WINDOW, timeout=WINDOW + 30)
    records = [r for r in ledger.history("health_check", 100) if since < r["tick"] <= since + WINDOW]
    ticks = sorted(r["tick"] for r in records)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))) and len(ticks) >= WINDOW - 1
    early = [(r["tick"], r["lag"]) for r in records if r["lag"] < 0]  # type: ignore[operator]
    assert early == [], f"pushed before the tick by Redis's clock: {early}"
    late = [(r["tick"], r["lag"]) for r in records if r["lag"] > 1.0]  # type: ignore[operator]
    assert late == [], f"pushed more than a second late: {late}"
    wait_until(lambda: all(t in executed_ticks(processes, worker) for t in ticks), timeout=20)
    ran = Counter(t for t in executed_ticks(processes, worker).elements() if t in set(ticks))
    assert {t: n for t, n in ran.items() if n > 1} == {}
    return records


@pytest.mark.usefixtures("skewable", "app")
def test_a_replica_two_seconds_fast_beside_a_true_one_never_pushes_early(redis: Redis, processes: Processes) -> None:
    fast = processes.start("-m", "scheduler_boot", name="fast", extra_env=faketime.skewed_env("+2s"))
    true = processes.start("-m", "scheduler_boot", name="true")
    worker = processes.start("-m", "jobs.worker", name="worker")
    since = redis_now(redis) + 3
    records = check_window(redis, processes, worker, since)
    # The fast replica does push ticks (the first to fire at Redis's instant wins), on time.
    assert len({r["scheduler"] for r in records}) >= 1
    assert "clock is 2." in processes.output(fast) and "ahead of Redis" in processes.output(fast)
    assert "clock is" not in processes.output(true)
    assert fast.poll() is None and true.poll() is None


@pytest.mark.parametrize("offset", ["+2s", "-2s"])
@pytest.mark.usefixtures("skewable", "app")
def test_a_skewed_replica_alone_pushes_every_tick_on_time(redis: Redis, processes: Processes, offset: str) -> None:
    processes.start("-m", "scheduler_boot", name=f"skewed{offset}", extra_env=faketime.skewed_env(offset))
    worker = processes.start("-m", "jobs.worker", name="worker")
    since = redis_now(redis) + 3
    records = check_window(redis, processes, worker, since)
    lags = sorted(r["lag"] for r in records)  # type: ignore[type-var]
    assert lags[len(lags) // 2] < 0.1, f"median push lateness {lags[len(lags) // 2]:.3f}s"
