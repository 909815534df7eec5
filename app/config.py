"""Settings from the environment, in one place."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from cronwork.connection import mask_url
from cronwork.settings import (
    DEFAULT_REDIS_URL,
    DEFAULT_SCHEDULE_FILE,
    PROJECT_ROOT,
    CronworkSettings,
    SettingsError,
    count,
    effective_env,
    instance_dir,
    seconds,
)

__all__ = ["DEFAULT_REDIS_URL", "DEFAULT_SCHEDULE_FILE", "PROJECT_ROOT", "instance_dir", "settings_from_env"]



def database_url(env: dict[str, str]) -> str:
    """DATABASE_URL, or the SQLite file under the instance directory; SettingsError when it is
    not a URL SQLAlchemy can use (Flask-SQLAlchemy builds the engine when the app is made)."""
    url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir(env) / 'cronwork.db'}"
    try:
        make_url(url).get_dialect()
    except NoSuchModuleError:  # an ArgumentError too: it goes first
        raise SettingsError(
            f"DATABASE_URL: no driver for {make_url(url).drivername!r} is installed ({mask_url(url)})"
        ) from None
    except ArgumentError:
        raise SettingsError(
            f"DATABASE_URL: {mask_url(url)!r} is not a database URL "
            "(expected e.g. sqlite:///path/to/file.db or postgresql+psycopg://user@host/db)"
        ) from None
    return url


def failure_limit(text: str) -> str:
    """AUTH_FAILURE_LIMIT in the rate-limit notation of the `limits` library, checked."""
    try:
        parse_many(text)
    except ValueError:
        example = "'10 per 15 minutes; 5 per minute'"
        raise SettingsError(f"AUTH_FAILURE_LIMIT: expected e.g. {example}, got {text!r}") from None
    return text


def settings_from_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables.

    Reading the environment opens no connection: URLs are only parsed later, lazily. A bad
    value raises SettingsError naming its variable. The Cronwork part (Redis, prefix, schedule
    file, start-up timeout) is CronworkSettings, which the scheduler reads without the app.
    """
    env = effective_env() if env is None else dict(env)
    core = CronworkSettings.from_env(env)
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
        "SQLALCHEMY_DATABASE_URI": database_url(env),
        "SCHEDULE_FILE": str(core.schedule_file),
        "APP_TIMEZONE": app_timezone,
        "CRONWORK_PREFIX": core.prefix,
        "SECRET_KEY": env.get("SECRET_KEY", ""),
        "ADMIN_TOKEN": env.get("ADMIN_TOKEN", ""),
        "ADMIN_USER": env.get("ADMIN_USER", ""),
        "ADMIN_PASSWORD": env.get("ADMIN_PASSWORD", ""),
        # Development only: serve the ops surface with weak secrets (app.ops.secret_policy).
        "ALLOW_WEAK_SECRETS": env.get("ALLOW_WEAK_SECRETS", "") == "1",
        # Behind TLS in production: send the session cookie over HTTPS only.
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "") == "1",
        # An ops login ends after this long without a request, and this long after it began
        # whatever happens (its record in Redis, app.ops.sessions).
        "SESSION_IDLE_TIMEOUT": seconds("SESSION_IDLE_TIMEOUT", env.get("SESSION_IDLE_TIMEOUT", "1800")),
        "SESSION_LIFETIME": seconds("SESSION_LIFETIME", env.get("SESSION_LIFETIME", "43200")),
        # Failed logins allowed per client and per account before a lockout (app.ops.limits has
        # the default, "10 per 15 minutes; 5 per minute").
        **(
            {"AUTH_FAILURE_LIMIT": failure_limit(env["AUTH_FAILURE_LIMIT"])}
            if "AUTH_FAILURE_LIMIT" in env
            else {}
        ),
        # External services of the shipments job; an empty URL means the built-in local one.
        "CARRIER_URL": env.get("CARRIER_URL", ""),
        "CARRIER_TOKEN": env.get("CARRIER_TOKEN", ""),
        "CARRIER_TIMEOUT": seconds("CARRIER_TIMEOUT", env.get("CARRIER_TIMEOUT", "10")),
        "MARKETPLACE_URL": env.get("MARKETPLACE_URL", ""),
        "MARKETPLACE_TOKEN": env.get("MARKETPLACE_TOKEN", ""),
        "MARKETPLACE_TIMEOUT": seconds("MARKETPLACE_TIMEOUT", env.get("MARKETPLACE_TIMEOUT", "10")),
        # Tries of one rental before a transient carrier/marketplace failure fails it for good.
        "SHIPMENT_MAX_ATTEMPTS": count("SHIPMENT_MAX_ATTEMPTS", env.get("SHIPMENT_MAX_ATTEMPTS", "5")),
        # Ticks one backfill may enqueue (flask schedules backfill, POST .../backfill).
        "BACKFILL_MAX_TICKS": count("BACKFILL_MAX_TICKS", env.get("BACKFILL_MAX_TICKS", "1000")),
        # The nightly CLIP inference (docs/vision.md): the exported model's directory, the
        # room photographs (rows hold paths relative to it), the zero-shot prompts, and how
        # many images go through the model at once.
        "CLIP_MODEL_DIR": env.get("CLIP_MODEL_DIR") or str(instance_dir(env) / "clip-model"),
        "ROOM_IMAGE_DIR": env.get("ROOM_IMAGE_DIR") or str(instance_dir(env) / "room-images"),
        "CLIP_PROMPTS_FILE": env.get("CLIP_PROMPTS_FILE")
        or str(PROJECT_ROOT / "app" / "services" / "clip_prompts.toml"),
        "CLIP_BATCH_SIZE": count("CLIP_BATCH_SIZE", env.get("CLIP_BATCH_SIZE", "16")),
        # Seconds a process keeps retrying Redis/DB at start before it exits non-zero.
        "STARTUP_TIMEOUT": core.startup_timeout,
        # A health_check job beat older than this makes /healthz unhealthy (the job runs every
        # 30 s). The scheduler loop's own limit is cronwork.store.SCHEDULER_HEARTBEAT_MAX_AGE.
        "HEARTBEAT_MAX_AGE": seconds("HEARTBEAT_MAX_AGE", env.get("HEARTBEAT_MAX_AGE", "120")),
    }
