"""Settings from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronwork.settings import (
    DEFAULT_REDIS_URL,
    DEFAULT_SCHEDULE_FILE,
    PROJECT_ROOT,
    CronworkSettings,
    SettingsError,
    seconds,
)

__all__ = ["DEFAULT_REDIS_URL", "DEFAULT_SCHEDULE_FILE", "PROJECT_ROOT", "instance_dir", "settings_from_env"]

DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"


def instance_dir() -> Path:
    """Directory for local state (SQLite file, embedded Redis data)."""
    return Path(os.environ.get("CRONWORK_INSTANCE_DIR", DEFAULT_INSTANCE_DIR))


def settings_from_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables.

    Reading the environment opens no connection: URLs are only parsed later, lazily. A bad
    value raises SettingsError naming its variable. The Cronwork part (Redis, prefix, schedule
    file, start-up timeout) is CronworkSettings, which the scheduler reads without the app.
    """
    env = dict(os.environ if env is None else env)
    core = CronworkSettings.from_env(env)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir() / 'cronwork.db'}"
    app_timezone = env.get("APP_TIMEZONE", "Asia/Shanghai")
    try:
        ZoneInfo(app_timezone)  # an unknown zone is a configuration error, reported at start
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"APP_TIMEZONE: unknown time zone {app_timezone!r}") from None
    return {
        "REDIS_URL": core.redis_url,
        # Through Redis Sentinel instead: "host:port,host:port" and the master's name.
        "REDIS_SENTINELS": env.get("REDIS_SENTINELS", ""),
        "REDIS_SENTINEL_MASTER": core.redis_sentinel_master,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SCHEDULE_FILE": str(core.schedule_file),
        "APP_TIMEZONE": app_timezone,
        "CRONWORK_PREFIX": core.prefix,
        "SECRET_KEY": env.get("SECRET_KEY", ""),
        "ADMIN_TOKEN": env.get("ADMIN_TOKEN", ""),
        "ADMIN_USER": env.get("ADMIN_USER", ""),
        "ADMIN_PASSWORD": env.get("ADMIN_PASSWORD", ""),
        # Behind TLS in production: send the session cookie over HTTPS only.
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "") == "1",
        # External services of the shipments job; an empty URL means the built-in local one.
        "CARRIER_URL": env.get("CARRIER_URL", ""),
        "CARRIER_TOKEN": env.get("CARRIER_TOKEN", ""),
        "CARRIER_TIMEOUT": seconds("CARRIER_TIMEOUT", env.get("CARRIER_TIMEOUT", "10")),
        "MARKETPLACE_URL": env.get("MARKETPLACE_URL", ""),
        "MARKETPLACE_TOKEN": env.get("MARKETPLACE_TOKEN", ""),
        "MARKETPLACE_TIMEOUT": seconds("MARKETPLACE_TIMEOUT", env.get("MARKETPLACE_TIMEOUT", "10")),
        # Seconds a process keeps retrying Redis/DB at start before it exits non-zero.
        "STARTUP_TIMEOUT": core.startup_timeout,
        # A health_check job beat older than this makes /healthz unhealthy (the job runs every
        # 30 s). The scheduler loop's own limit is cronwork.store.SCHEDULER_HEARTBEAT_MAX_AGE.
        "HEARTBEAT_MAX_AGE": seconds("HEARTBEAT_MAX_AGE", env.get("HEARTBEAT_MAX_AGE", "120")),
    }
