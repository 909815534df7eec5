"""`make run`: the whole system on embedded defaults, started and stopped in order.

1. The settings and the schedule file are checked before anything starts: a typo is the only
   thing printed (exit 2).
2. The database is migrated and, on first run, seeded with demo data (one line naming the URL
   when it cannot be used).
3. Without REDIS_URL, a bundled redis-server starts on 127.0.0.1:EMBEDDED_REDIS_PORT (6390),
   data and log under instance/redis/, in its own session so Ctrl-C does not reach it.
4. The settings the processes get are written to instance/run-settings.json, so a command in
   a second terminal reaches the same system (cronwork.settings.effective_env).
5. honcho runs the Procfile (app.supervisor). Ctrl-C stops web, scheduler and workers, each
   within its grace; Redis is stopped after the last of them, and the settings file removed.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from app.config import PROJECT_ROOT, settings_from_env
from app.embedded_redis import EmbeddedRedis
from app.supervisor import Supervisor, foreground_group
from cronwork.loader import load_schedule
from cronwork.settings import SettingsError, instance_dir, mask_url, run_settings_path, write_run_settings
from cronwork.spec import ScheduleError

EMBEDDED_REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", "6390"))
DEV_ADMIN_USER = "admin"
EXIT_BAD_CONFIG = 2
# What a command started by hand needs to reach the running system (secrets stay in their
# own owner-only files under instance/).
SHARED_SETTINGS = ("REDIS_URL", "DATABASE_URL", "CRONWORK_PREFIX", "SCHEDULE_FILE", "APP_TIMEZONE")


def dev_secret(path: Path) -> str:
    """A random secret kept under instance/ (owner-only) so restarts keep sessions and tokens."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def dev_credentials(env: dict[str, str], folder: Path) -> str:
    """Fill in the secrets the ops surface refuses to serve without; returns what to tell the user."""
    made = []
    for key, default in (
        ("SECRET_KEY", lambda: dev_secret(folder / "dev-secret-key")),
        ("ADMIN_TOKEN", lambda: dev_secret(folder / "dev-admin-token")),
        ("ADMIN_USER", lambda: DEV_ADMIN_USER),
        ("ADMIN_PASSWORD", lambda: dev_secret(folder / "dev-admin-password")),
    ):
        if not env.get(key):
            env[key] = default()
            made.append(key)
    if not {"ADMIN_TOKEN", "ADMIN_USER", "ADMIN_PASSWORD"} & set(made):
        return "Ops credentials: from your environment.\n"
    return (
        f"Ops login: user {env['ADMIN_USER']!r}, password {env['ADMIN_PASSWORD']!r}; "
        f"API: Authorization: Bearer {env['ADMIN_TOKEN']} (dev values kept under {folder})\n"
    )


def check_configuration(env: dict[str, str]) -> str | None:
    """The first thing wrong with the settings or the schedule file, in its own words."""
    try:
        config = settings_from_env(env)
        load_schedule(config["SCHEDULE_FILE"])
    except (SettingsError, ScheduleError) as exc:
        return str(exc)
    return None


def prepare_database(env: dict[str, str]) -> int:
    """Migrate, and seed demo data on first run; the command prints its own one-line error.

    In its own session, so that a Ctrl-C is ours to handle: we stop it quietly."""
    seed = [sys.executable, "-m", "flask", "--app", "app", "demo", "seed", "--if-empty"]
    process = subprocess.Popen(seed, env=env, cwd=PROJECT_ROOT, start_new_session=True)
    try:
        return process.wait()
    except StopRequested:
        process.terminate()
        process.wait()
        raise


def main() -> int:
    folder = instance_dir()
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    embedded = None
    if not env.get("REDIS_URL"):
        embedded = EmbeddedRedis(
            folder / "redis",
            port=EMBEDDED_REDIS_PORT,
            persist=True,
            log_file=folder / "redis" / "redis.log",
            own_session=True,
        )
        env["REDIS_URL"] = embedded.url
    problem = check_configuration(env)
    if problem is not None:
        sys.stderr.write(f"{problem}\n")
        return EXIT_BAD_CONFIG
    env.setdefault("DATABASE_URL", settings_from_env(env)["SQLALCHEMY_DATABASE_URI"])
    credentials = dev_credentials(env, folder)
    web = f"http://{env.setdefault('WEB_HOST', '127.0.0.1')}:{env.setdefault('WEB_PORT', '8000')}/"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    with foreground_group(), stop_on_signal():
        try:
            return run(env, embedded, web, credentials)
        except StopRequested:
            sys.stdout.write("stopped before every process had started\n")
            return 0


def run(env: dict[str, str], embedded: EmbeddedRedis | None, web: str, credentials: str) -> int:
    """Database, Redis, then the Procfile until stopped; Redis and the settings file go last."""
    status = prepare_database(env)
    if status:
        return status
    shared = run_settings_path()
    try:
        if embedded is not None:
            try:
                embedded.start()
            except RuntimeError as exc:
                sys.stderr.write(f"redis: {exc} (set EMBEDDED_REDIS_PORT, or REDIS_URL for your own)\n")
                return 1
        write_run_settings(shared, {key: env[key] for key in SHARED_SETTINGS if env.get(key)})
        sys.stdout.write(
            f"Cronwork: web at {web} (health: {web}healthz), Redis at {mask_url(env['REDIS_URL'])}\n"
            f"{credentials}"
            f"Commands in another terminal reach this system (settings in {shared}).\n"
            "Ctrl-C stops every process, Redis last.\n"
        )
        sys.stdout.flush()
        supervisor = Supervisor.from_procfile((PROJECT_ROOT / "Procfile").read_text(), env, str(PROJECT_ROOT))
        supervisor.loop()  # from here on honcho's handler (app.supervisor) takes the signals
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):  # a further Ctrl-C must not cut the clean-up
            signal.signal(number, signal.SIG_IGN)
        shared.unlink(missing_ok=True)
        if embedded is not None and embedded.process is not None:
            embedded.stop()
            sys.stdout.write("redis stopped\n")
    # Stopped by Ctrl-C or SIGTERM: a clean stop, not a failure (honcho says 130 or 143).
    return 0 if supervisor.returncode in (0, 130, 143) else int(supervisor.returncode or 1)


class StopRequested(Exception):
    """Ctrl-C or SIGTERM before the supervisor took over the signals."""


@contextmanager
def stop_on_signal() -> Iterator[None]:
    """Until honcho installs its own handler, a signal unwinds start-up cleanly (a Ctrl-C in
    the first seconds gave a KeyboardInterrupt traceback and left Redis running)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise StopRequested

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


if __name__ == "__main__":
    raise SystemExit(main())
