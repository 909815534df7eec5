"""Shared fixtures: one real redis-server per session, a clean Redis and database per test."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import stamp
from redis import Redis

from app import create_app
from app.config import PROJECT_ROOT
from app.embedded_postgres import EmbeddedPostgres, PostgresNotAvailable
from app.embedded_redis import EmbeddedRedis, free_port
from app.extensions import cronwork, db

# No test reads the settings of a `make run` running from this checkout
# (instance/run-settings.json): the suite's processes and apps get their own instance directory.
os.environ["CRONWORK_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="cronwork-test-instance-")
atexit.register(shutil.rmtree, os.environ["CRONWORK_INSTANCE_DIR"], True)
# The suite's apps and processes use short, fixed test secrets (readable in failures): the
# development switch lets the ops surface serve with them. tests/app/test_secret_policy.py turns
# it off to prove weak secrets are refused.
os.environ["ALLOW_WEAK_SECRETS"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, the controller starts the chaos harness once, before its workers
    (tests/test_chaos.py), when the run includes that test; the workers inherit where its
    report goes."""
    if not _is_xdist_controller(config) or not _selects_chaos(config) or config.option.collectonly:
        return
    from tests.test_chaos import REPORT_ENV, launch_chaos

    report = Path(tempfile.mkstemp(prefix="cronwork-chaos-", suffix=".log")[1])
    os.environ[REPORT_ENV] = str(report)
    config.stash[_CHAOS] = launch_chaos(report)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller's harness, if the run ended before it did, is stopped."""
    process = config.stash.get(_CHAOS, None)
    if process is not None:
        from tests.test_chaos import REPORT_ENV, stop_chaos

        stop_chaos(process)
        Path(os.environ[REPORT_ENV]).unlink(missing_ok=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without xdist: start the chaos harness in the background as soon as its test is
    collected, so it runs beside the in-process tests instead of after them."""
    if hasattr(session.config, "workerinput") or session.config.option.collectonly:
        return  # an xdist worker (the controller started it), or nothing will run
    if any(item.path.name == "test_chaos.py" for item in session.items):
        from tests.test_chaos import start_chaos

        start_chaos()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A background chaos run the session did not wait for (it stopped early) is stopped."""
    chaos = sys.modules.get("tests.test_chaos")
    if chaos is not None and not hasattr(session.config, "workerinput"):
        chaos.stop_chaos()


_CHAOS = pytest.StashKey[subprocess.Popen[bytes]]()


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def _selects_chaos(config: pytest.Config) -> bool:
    """Whether the command line's paths include tests/test_chaos.py (no -k/-m filter)."""
    if config.option.keyword or config.option.markexpr:
        return False
    chaos = (PROJECT_ROOT / "tests" / "test_chaos.py").resolve()
    paths = [arg.split("::")[0] for arg in config.args] or ["tests"]
    for arg in paths:
        path = (Path(config.invocation_params.dir) / arg).resolve()
        if path == chaos or path in chaos.parents:
            return True
    return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (the bundled binary) on a free port, for the whole session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """URL of the session's Redis, flushed before and after the test."""
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """A real local PostgreSQL server (Debian's binaries) for the whole session."""
    try:
        server = EmbeddedPostgres().start()
    except PostgresNotAvailable as exc:
        if os.environ.get("CI"):
            raise  # CI must test PostgreSQL for real; `make test` installs it
        pytest.skip(f"PostgreSQL NOT TESTED: {exc}")
    yield server
    server.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_databases` run on SQLite and on PostgreSQL; others on SQLite."""
    if "db_backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_databases") is not None
        metafunc.parametrize("db_backend", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh database for the test: a SQLite file, or a new PostgreSQL database."""
    if db_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server: EmbeddedPostgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def app(redis_url: str, database_url: str) -> Iterator[Flask]:
    """The app on the test Redis and a fresh database with every table created."""
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": redis_url,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "test-secret",
        }
    )
    with app.app_context():
        # create_all is much faster than replaying migrations per test; stamping head keeps
        # Alembic consistent (tests/app/test_migrations.py proves both give the same schema).
        db.create_all()
        stamp()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def redis(app: Flask) -> Redis:
    """The app's Redis client."""
    return cronwork.redis(app)


class Processes:
    """Real subprocesses started by a test, stopped (then killed) at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(
        self, *args: str, name: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `python <args>` in the project root; output goes to <log_dir>/<name>.log."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log_file:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=PROJECT_ROOT,
                env={**self.env, **(extra_env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.started.append((proc, log_path))
        return proc

    def start_web(self, name: str = "web", **env: str) -> tuple[subprocess.Popen[bytes], str]:
        """gunicorn serving `app:create_app()` on a free 127.0.0.1 port, as the Procfile's web
        does, with `env` on top of the test's; returns the process and its base URL once it
        answers (any status: /healthz may say 503)."""
        port = free_port()
        extra = {"WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "WEB_CONCURRENCY": "1", **env}
        web = self.start(
            "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()", name=name, extra_env=extra
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: web.poll() is not None or http_answers(f"{base}/healthz"), timeout=30)
        except AssertionError:
            pytest.fail(f"web server did not answer:\n{self.output(web)}")
        assert web.poll() is None, self.output(web)
        return web, base

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """Everything the process has written so far."""
        for started, path in self.started:
            if started is proc:
                return path.read_text(errors="replace")
        raise KeyError(proc)

    def stop_all(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def process_env(redis_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for real Cronwork processes on the test Redis and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "SCHEDULE_"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        CRONWORK_INSTANCE_DIR=str(tmp_path / "instance"),
        PYTHONUNBUFFERED="1",
        STARTUP_TIMEOUT="5",
    )
    return env


@pytest.fixture
def processes(process_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    """Start real processes; every one is stopped when the test ends."""
    procs = Processes(process_env, tmp_path)
    yield procs
    procs.stop_all()


def http_answers(url: str) -> bool:
    """Whether a server answers `url` with any HTTP status."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP answer, even an error, means the server is up
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
