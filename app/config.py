"""Settings from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"
DEFAULT_SCHEDULE_FILE = PROJECT_ROOT / "scheduler_boot" / "schedule.toml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def instance_dir() -> Path:
    """Directory for local state (SQLite file, embedded Redis data)."""
    return Path(os.environ.get("CRONWORK_INSTANCE_DIR", DEFAULT_INSTANCE_DIR))


def settings_from_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables.

    Reading the environment opens no connection: URLs are only parsed later, lazily.
    """
    env = dict(os.environ if env is None else env)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir() / 'cronwork.db'}"
    app_timezone = env.get("APP_TIMEZONE", "Asia/Shanghai")
    ZoneInfo(app_timezone)  # an unknown zone is a configuration error, reported at start
    return {
        "REDIS_URL": env.get("REDIS_URL", DEFAULT_REDIS_URL),
        # Through Redis Sentinel instead: "host:port,host:port" and the master's name.
        "REDIS_SENTINELS": env.get("REDIS_SENTINELS", ""),
        "REDIS_SENTINEL_MASTER": env.get("REDIS_SENTINEL_MASTER", "mymaster"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SCHEDULE_FILE": env.get("SCHEDULE_FILE", str(DEFAULT_SCHEDULE_FILE)),
        "APP_TIMEZONE": app_timezone,
        "CRONWORK_PREFIX": env.get("CRONWORK_PREFIX", "cronwork"),
        "SECRET_KEY": env.get("SECRET_KEY", ""),
        "ADMIN_TOKEN": env.get("ADMIN_TOKEN", ""),
        "ADMIN_USER": env.get("ADMIN_USER", ""),
        "ADMIN_PASSWORD": env.get("ADMIN_PASSWORD", ""),
        # Behind TLS in production: send the session cookie over HTTPS only.
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "") == "1",
        # External services of the shipments job; an empty URL means the built-in local one.
        "CARRIER_URL": env.get("CARRIER_URL", ""),
        "CARRIER_TOKEN": env.get("CARRIER_TOKEN", ""),
        "CARRIER_TIMEOUT": float(env.get("CARRIER_TIMEOUT", "10")),
        "MARKETPLACE_URL": env.get("MARKETPLACE_URL", ""),
        "MARKETPLACE_TOKEN": env.get("MARKETPLACE_TOKEN", ""),
        "MARKETPLACE_TIMEOUT": float(env.get("MARKETPLACE_TIMEOUT", "10")),
        # Seconds a process keeps retrying Redis/DB at start before it exits non-zero.
        "STARTUP_TIMEOUT": float(env.get("STARTUP_TIMEOUT", "10")),
        # A health_check heartbeat older than this makes /healthz unhealthy.
        "HEARTBEAT_MAX_AGE": float(env.get("HEARTBEAT_MAX_AGE", "120")),
    }
