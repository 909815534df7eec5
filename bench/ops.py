"""Ops-surface benchmark (issue 11, part 6): `GET /`, `GET /api/schedules`, `GET /metrics`.

1,000 registered schedules, each with a full ledger (100 runs, then 500), on a fresh bundled
Redis and a SQLite app; every endpoint is requested N times through the Flask test client.
Reported per endpoint and history size: median and p95 wall time, the median CPU time of this
process and the mean CPU time of Redis per request (steadier than wall time on a shared
machine), the commands Redis executed for one request (`INFO commandstats`, the commands of
scripts included) and the round trips (what redis-py sends: one per command, one per
pipeline). Targets: median ≤ 200 ms; commands and round trips the same at 100 and 500 runs.
"""

from __future__ import annotations

import base64
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from redis.connection import AbstractConnection

from app import create_app
from app.extensions import cronwork, db
from bench.harness import percentile, redis_server
from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.loader import load_schedule
from scheduler_boot.sync import apply_plan

SCHEDULES = 1000
HISTORIES = (100, 500)  # runs kept per schedule, measured in this order
REQUESTS = 20
TARGET_MS = 200.0
TICK_EVERY = 60  # seconds between the ledger's ticks
TOKEN, USER, PASSWORD = "bench-token", "bench", "bench-password"
# Seen on an ops page: mostly successes, some failures and misses, now and then a skip.
STATES = ["succeeded"] * 12 + ["failed", "missed", "skipped_overlap", "timed_out"]
ENDPOINTS: dict[str, dict[str, str]] = {
    "/": {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()},
    "/api/schedules": {"Authorization": f"Bearer {TOKEN}"},
    "/metrics": {},
}


def _schedule_text(count: int) -> str:
    """A schedule file of `count` schedules with a mix of cron and interval triggers and zones."""
    triggers = ('cron = "*/5 * * * *"', 'every = "1m"', 'cron = "0 2 * * 1-5"', 'every = "30s"')
    zones = ("Asia/Shanghai", "Europe/Paris", "UTC", "America/New_York")
    parts = ['[defaults]\ntimeout = "30s"\n']
    for i in range(count):
        parts.append(
            f'[schedules.ops{i:04d}]\nfunc = "jobs.system.health_check"\n{triggers[i % 4]}\n'
            f'timezone = "{zones[i % 3]}"\ndescription = "benchmark schedule {i}"\n'
        )
    return "\n".join(parts)


def _app(redis_url: str, folder: Path) -> Flask:
    schedule = folder / "schedule.toml"
    schedule.write_text(_schedule_text(SCHEDULES))
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}",
            "SECRET_KEY": "bench-secret",
            "ADMIN_TOKEN": TOKEN,
            "ADMIN_USER": USER,
            "ADMIN_PASSWORD": PASSWORD,
            "SCHEDULE_FILE": str(schedule),
        }
    )
    with app.app_context():
        db.create_all()
    return app


def _record(name: str, tick: int, keys: Keys, n: int) -> dict[str, Any]:
    """A ledger record as the worker leaves it (sizes close to real ones)."""
    state = STATES[n % len(STATES)]
    at = datetime.fromtimestamp(tick, UTC)
    fields: dict[str, Any] = {"state": state, "job_id": keys.run_id(name, tick), "trigger": "schedule"}
    if state != "missed":
        fields.update(enqueued_at=(at + timedelta(seconds=0.004)).isoformat(), lag=0.004)
    if state in ("succeeded", "failed", "timed_out"):
        fields.update(
            started_at=(at + timedelta(seconds=0.2)).isoformat(),
            ended_at=(at + timedelta(seconds=1.4)).isoformat(),
            duration=1.2,
            attempt=1,
            worker="bench-worker-1",
        )
    if state == "succeeded":
        fields["result"] = '{"ok": true, "checked": 42, "note": "all parts answered"}'
    if state in ("failed", "timed_out"):
        fields.update(error_type="RuntimeError", error=f"carrier API answered 503 at tick {tick}")
    return fields


def _fill(conn: Redis, keys: Keys, names: list[str], start: int, stop: int, now: int) -> None:
    """Ledger records number start..stop-1 back from `now` (0 = newest) for every schedule."""
    ledger = Ledger(conn, keys, cap=stop)
    newest = now // TICK_EVERY * TICK_EVERY
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            for n in range(start, stop):
                tick = newest - n * TICK_EVERY
                ledger.put(name, tick, _record(name, tick, keys, n), pipeline=pipe)
            if len(pipe) > 50_000:
                pipe.execute()
        pipe.execute()


@contextmanager
def _round_trips() -> Iterator[list[int]]:
    """Count what redis-py sends: one packet per command, one per pipeline."""
    count = [0]
    original = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def _commands(conn: Redis) -> int:
    """Commands Redis executed since the last CONFIG RESETSTAT, without the bench's own."""
    stats = conn.info("commandstats")
    own = ("cmdstat_info", "cmdstat_config")
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(own))


def _redis_cpu(conn: Redis) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _measure(
    client: FlaskClient, probe: Redis, path: str, headers: dict[str, str], requests: int
) -> dict[str, float]:
    """One counted request, then `requests` timed ones: wall time, this process's CPU time,
    and Redis's CPU time per request (the machine is shared: CPU times vary less than wall)."""
    probe.config_resetstat()
    with _round_trips() as trips:
        response = client.get(path, headers=headers)
    commands = _commands(probe)
    assert response.status_code == 200, (path, response.status_code, response.get_data(as_text=True)[:300])
    times, cpu = [], []
    redis_cpu = _redis_cpu(probe)
    for _ in range(requests):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(path, headers=headers)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        assert response.status_code == 200
    redis_cpu = (_redis_cpu(probe) - redis_cpu) / requests
    return {
        "median": statistics.median(times) * 1000,
        "p95": percentile(times, 95) * 1000,
        "cpu": statistics.median(cpu) * 1000,
        "redis_cpu": redis_cpu * 1000,
        "commands": commands,
        "trips": trips[0],
        "bytes": len(response.get_data()),
    }


def run(requests: int = REQUESTS) -> None:
    """Both history sizes, every endpoint; prints a table with the targets beside it."""
    print(
        f"\n== ops surface: {SCHEDULES} schedules, {requests} requests per endpoint (target median ≤ {TARGET_MS:.0f} ms)"
    )
    began = time.perf_counter()
    with redis_server() as server, tempfile.TemporaryDirectory() as folder:
        app = _app(server.url, Path(folder))
        conn, keys = cronwork.redis(app), cronwork.keys(app)
        specs = load_schedule(app.config["SCHEDULE_FILE"]).specs
        apply_plan(conn, specs, keys, datetime.now(UTC))
        names = sorted(specs)
        now = int(time.time())
        client = app.test_client()
        probe = Redis.from_url(server.url)  # counts commands; never used by the app
        # Warm: the schedule file is parsed once per version, like in a running web process.
        warm = time.perf_counter()
        client.get("/", headers=ENDPOINTS["/"])
        print(f"first request (parses the schedule file): {(time.perf_counter() - warm) * 1000:.0f} ms")
        results: dict[tuple[str, int], dict[str, float]] = {}
        filled = 0
        for runs in HISTORIES:
            fill = time.perf_counter()
            _fill(conn, keys, names, filled, runs, now)
            filled = runs
            kept = conn.zcard(keys.ledger(names[0]))
            print(
                f"\n-- {runs} runs per schedule (ledger holds {kept}; filled in {time.perf_counter() - fill:.1f} s)"
            )
            for path, headers in ENDPOINTS.items():
                row = results[(path, runs)] = _measure(client, probe, path, headers, requests)
                verdict = "ok" if row["median"] <= TARGET_MS else "OVER"
                print(
                    f"GET {path:<15} median {row['median']:6.1f} ms  p95 {row['p95']:6.1f}  [{verdict}]  "
                    f"app cpu {row['cpu']:6.1f} ms  redis cpu {row['redis_cpu']:5.1f} ms  "
                    f"redis commands {row['commands']:6.0f}  round trips {row['trips']:3.0f}  "
                    f"body {row['bytes'] / 1024:5.0f} KiB"
                )
    print(f"\nindependent of runs kept ({HISTORIES[0]} vs {HISTORIES[-1]}):")
    for path in ENDPOINTS:
        small, large = results[(path, HISTORIES[0])], results[(path, HISTORIES[-1])]
        same = small["commands"] == large["commands"] and small["trips"] == large["trips"]
        print(
            f"GET {path:<15} commands {small['commands']:.0f} → {large['commands']:.0f}, "
            f"round trips {small['trips']:.0f} → {large['trips']:.0f}  [{'ok' if same else 'GROWS'}]"
        )
    print(f"(bench took {time.perf_counter() - began:.0f} s)")
