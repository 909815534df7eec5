"""A throwaway local PostgreSQL server for the test suite and benchmarks (Debian's binaries).

initdb refuses to run as root, so when we are root the server runs as the `postgres` user
(created by Debian's package). Data lives in a temp directory and is deleted on stop.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from app.embedded_redis import free_port

ROLE = "cronwork"


class PostgresNotAvailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bin_dir() -> Path:
    """Directory holding initdb/pg_ctl: PATH first, then Debian's versioned directories."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresNotAvailable("no initdb found (apt-get install postgresql)")


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


class EmbeddedPostgres:
    """A PostgreSQL server on a loopback port with trust auth for role `cronwork`."""

    def __init__(self) -> None:
        self.bin = find_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cronwork-pg-"))
        self.data = self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{database}"

    def start(self) -> EmbeddedPostgres:
        """initdb, then start and wait until it accepts connections."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            _as_server_user([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", ROLE]),
            check=True,
            capture_output=True,
        )
        # Throwaway test data: no fsync, loopback only, socket in our own directory.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_server_user(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.root / "log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={ROLE} dbname={database}"

    def create_database(self, name: str) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
