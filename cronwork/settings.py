"""Cronwork's settings: one frozen, typed object read from the environment.

Every process builds it once (the web app and the worker through `app.extensions.cronwork`,
the scheduler straight from the environment, with no Flask app). A bad value fails at start,
naming its variable: `STARTUP_TIMEOUT: expected a number of seconds, got 'abc'`.

`make run` writes the settings it gave its processes to instance/run-settings.json while it
runs; a process started by hand in a second terminal reads them under its own environment, so
`flask --app app schedules list` reaches the same Redis and database without exporting anything.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEDULE_FILE = PROJECT_ROOT / "scheduler_boot" / "schedule.toml"
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"
RUN_SETTINGS_FILE = "run-settings.json"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "cronwork"
DEFAULT_SENTINEL_MASTER = "mymaster"
DEFAULT_STARTUP_TIMEOUT = 10.0
# The prefix starts every key and every RQ job id: RQ ids allow letters, digits, _ and -.
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


MASK = "***"
# Query parameter names that carry secrets in database and Redis URLs (password, sslpassword,
# auth_token, api_key, secret, credentials …); a false positive only hides a harmless value.
SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting has a value Cronwork cannot use; the message names the variable."""


@dataclass(frozen=True)
class CronworkSettings:
    """Where Redis is, the key prefix, the schedule file and the start-up timeout."""

    redis_url: str = DEFAULT_REDIS_URL
    # Through Redis Sentinel instead: (host, port) pairs and the master's name; the password
    # and db still come from redis_url.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = DEFAULT_SENTINEL_MASTER
    prefix: str = DEFAULT_PREFIX
    schedule_file: Path = DEFAULT_SCHEDULE_FILE
    # Seconds a process keeps retrying Redis (and the database) at start before it exits.
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CronworkSettings:
        """Read REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, CRONWORK_PREFIX,
        SCHEDULE_FILE and STARTUP_TIMEOUT; raises SettingsError naming a bad one."""
        env = effective_env() if env is None else env
        return cls.from_mapping(
            {
                "REDIS_URL": env.get("REDIS_URL", DEFAULT_REDIS_URL),
                "REDIS_SENTINELS": env.get("REDIS_SENTINELS", ""),
                "REDIS_SENTINEL_MASTER": env.get("REDIS_SENTINEL_MASTER", DEFAULT_SENTINEL_MASTER),
                "CRONWORK_PREFIX": env.get("CRONWORK_PREFIX", DEFAULT_PREFIX),
                "SCHEDULE_FILE": env.get("SCHEDULE_FILE", str(DEFAULT_SCHEDULE_FILE)),
                "STARTUP_TIMEOUT": env.get("STARTUP_TIMEOUT", str(DEFAULT_STARTUP_TIMEOUT)),
            }
        )

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> CronworkSettings:
        """The same settings from a Flask config (values may already be typed)."""
        return cls(
            redis_url=_redis_url("REDIS_URL", config.get("REDIS_URL") or DEFAULT_REDIS_URL),
            redis_sentinels=parse_sentinels(str(config.get("REDIS_SENTINELS") or "")),
            redis_sentinel_master=str(config.get("REDIS_SENTINEL_MASTER") or DEFAULT_SENTINEL_MASTER),
            prefix=_prefix("CRONWORK_PREFIX", config.get("CRONWORK_PREFIX") or DEFAULT_PREFIX),
            schedule_file=Path(config.get("SCHEDULE_FILE") or DEFAULT_SCHEDULE_FILE),
            startup_timeout=seconds(
                "STARTUP_TIMEOUT", config.get("STARTUP_TIMEOUT", DEFAULT_STARTUP_TIMEOUT)
            ),
        )


def instance_dir(env: Mapping[str, str] | None = None) -> Path:
    """Directory for local state (SQLite file, embedded Redis data, the running system's settings)."""
    env = os.environ if env is None else env
    return Path(env.get("CRONWORK_INSTANCE_DIR") or DEFAULT_INSTANCE_DIR)


def run_settings_path(env: Mapping[str, str] | None = None) -> Path:
    """Where `make run` keeps the settings of the system it runs."""
    return instance_dir(env) / RUN_SETTINGS_FILE


def write_run_settings(path: Path, values: Mapping[str, str]) -> None:
    """Write the running system's settings whole or not at all (owner-only: URLs may hold a
    password)."""
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        json.dump(dict(values), out, indent=2, sort_keys=True)
    temporary.replace(path)


def read_run_settings(path: Path) -> dict[str, str]:
    """The settings a running `make run` wrote; {} when it is not running."""
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: unreadable settings of `make run` ({exc}); delete the file") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise SettingsError(f"{path}: expected an object of strings; delete the file")
    return {str(key): value for key, value in values.items()}


def effective_env() -> dict[str, str]:
    """This process's environment over the settings of a running `make run`: what the
    environment says wins, the rest comes from the running system."""
    return {**read_run_settings(run_settings_path()), **os.environ}


def seconds(name: str, value: Any) -> float:
    """A duration setting in seconds (a number ≥ 0); SettingsError names `name` otherwise."""
    if isinstance(value, bool):
        raise SettingsError(f"{name}: expected a number of seconds, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise SettingsError(f"{name}: expected a number of seconds >= 0, got {value!r}")
    return number


def count(name: str, value: Any) -> int:
    """A whole number ≥ 1; SettingsError names `name` otherwise."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{name}: expected a whole number >= 1, got {value!r}")
    return int(text)


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` → ((host, port), ...)."""
    nodes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"REDIS_SENTINELS: {item!r} is not host:port")
        nodes.append((host, int(port)))
    return tuple(nodes)


def mask_url(url: str) -> str:
    """The URL with every secret in it replaced by ***: the userinfo password and the value of
    every query parameter whose name looks secret (password, token, secret, key, auth …).

    redis-py and libpq also read the password from the query (`unix:///run/redis.sock?password=…`,
    `…/db?password=…`), which /healthz, start-up lines and 503 pages printed verbatim (issue 13).
    Works on the text, not on urlsplit/urlunsplit: those rewrite `sqlite:///path` and raise on a
    bad port, and a URL that does not parse must still be shown masked.
    """
    base, hash_mark, fragment = url.partition("#")
    base, question_mark, query = base.partition("?")
    scheme, slashes, rest = base.partition("://")
    if slashes:
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if at and colon:
            authority = f"{user}:{MASK}@{host}"
        base = f"{scheme}://{authority}{slash}{path}"
    if question_mark:
        query = "&".join(_mask_parameter(item) for item in query.split("&"))
    return f"{base}{question_mark}{query}{hash_mark}{fragment}"


def _mask_parameter(item: str) -> str:
    """`name=value` with the value masked when the name looks like a secret's."""
    name, equals, value = item.partition("=")
    if equals and value and SECRET_PARAMETER.search(unquote_plus(name)):
        return f"{name}={MASK}"
    return item


def _redis_url(name: str, value: Any) -> str:
    url = str(value)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{name}: expected a redis://, rediss:// or unix:// URL, got {mask_url(url)!r}")
    return url


def _prefix(name: str, value: Any) -> str:
    prefix = str(value)
    if not PREFIX_PATTERN.match(prefix):
        raise SettingsError(f"{name}: expected 1-32 of letters, digits, '_', '-', got {prefix!r}")
    return prefix
