"""One harness run end to end: its folder, Redis and database, the phases, the audit, cleanup."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from redis import Redis

from app.config import PROJECT_ROOT
from app.embedded_redis import EmbeddedRedis, free_port
from bench.chaos.audit import Hostile, audit
from bench.chaos.cluster import Cluster
from bench.chaos.phases import Options, drain, run_chaos, settle
from bench.chaos.processes import become_subreaper
from bench.chaos.report import print_report
from bench.chaos.schedule import KEYS, SCHEDULE
from bench.chaos.timeline import Timeline
from bench.harness import process_env, python
from cronwork.loader import load_schedule


class Interrupted(Exception):
    """SIGTERM (or SIGINT) asked the harness to stop."""


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM raises Interrupted (Ctrl-C already raises KeyboardInterrupt): cleanup runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def chaos(options: Options) -> int:
    """Run the whole harness; returns the number of violations."""
    become_subreaper()
    folder = Path(tempfile.mkdtemp(prefix="cronwork-chaos-"))
    server = EmbeddedRedis(folder / "redis", port=free_port(), persist=True)
    cluster: Cluster | None = None
    violations = 0
    try:
        with _interruptible():
            server.start()
            env = process_env(server.url, folder, SCHEDULE)
            for key in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
                env.pop(key, None)
            env.update(CRONWORK_PREFIX=KEYS.prefix, STARTUP_TIMEOUT="30")
            logs = folder / "logs"
            logs.mkdir()
            migrate = subprocess.run(
                python("-m", "flask", "--app", "app", "db", "upgrade"),
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                timeout=120,
            )
            if migrate.returncode != 0:
                raise RuntimeError(f"db upgrade failed:\n{migrate.stdout.decode()}{migrate.stderr.decode()}")
            schedule = load_schedule(folder / "schedule.toml")
            conn = Redis.from_url(server.url, socket_timeout=10)
            cluster = Cluster(env, logs, conn)
            timeline = Timeline()
            print(f"chaos: {options.seconds:.0f}s, seed {options.seed}, folder {folder}", flush=True)
            marker = folder / "hostile-payload-ran"  # written only if something unpickles a payload
            kills, planted = run_chaos(cluster, conn, server, options, timeline, marker)
            drain(cluster, conn, schedule, timeline)
            settle(cluster, conn, schedule, timeline)
            cluster.stop("worker")
            result = audit(conn, schedule, cluster, kills, timeline, Hostile(marker, planted))
            print_report(result, cluster, kills, timeline, options)
            conn.close()
            violations = len(result.violations)
            return violations
    finally:
        if cluster is not None:
            cluster.kill_everything(spare=server.process.pid if server.process else None)
        server.stop()
        if options.keep or violations:
            print(f"kept for inspection (logs/, redis/ with the AOF): {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
