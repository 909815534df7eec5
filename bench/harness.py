"""Shared pieces of the benchmarks: Redis servers, process environments, statistics."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from app.config import PROJECT_ROOT
from app.embedded_redis import EmbeddedRedis


@contextmanager
def redis_server() -> Iterator[EmbeddedRedis]:
    """A fresh bundled redis-server on a free port."""
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder)).start()
        try:
            yield server
        finally:
            server.stop()


def process_env(redis_url: str, folder: Path, schedule: str | None = None) -> dict[str, str]:
    """Environment for Cronwork processes on a given Redis and a SQLite file in `folder`."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=f"sqlite:///{folder / 'bench.db'}",
        CRONWORK_INSTANCE_DIR=str(folder),
        PYTHONUNBUFFERED="1",
    )
    if schedule is not None:
        path = folder / "schedule.toml"
        path.write_text(schedule)
        env["SCHEDULE_FILE"] = str(path)
    return env


def start(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in the project root with its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(list(args), cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (inclusive method); values need not be sorted."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"
