"""CronworkSettings: read once from the environment, typed, failing with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from cronwork.connection import describe_redis, mask_url
from cronwork.settings import DEFAULT_SCHEDULE_FILE, CronworkSettings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = CronworkSettings.from_env({})
    assert settings == CronworkSettings()
    assert settings.prefix == "cronwork" and settings.schedule_file == DEFAULT_SCHEDULE_FILE
    assert settings.startup_timeout == 10.0 and settings.redis_sentinels == ()


def test_values_are_typed() -> None:
    settings = CronworkSettings.from_env(
        {
            "REDIS_URL": "redis://:secret@redis:6379/2",
            "REDIS_SENTINELS": "s1:26379, s2:26380",
            "REDIS_SENTINEL_MASTER": "main",
            "CRONWORK_PREFIX": "cw-test",
            "SCHEDULE_FILE": "/etc/cronwork/schedule.toml",
            "STARTUP_TIMEOUT": "2.5",
        }
    )
    assert settings.redis_sentinels == (("s1", 26379), ("s2", 26380))
    assert settings.schedule_file == Path("/etc/cronwork/schedule.toml")
    assert settings.startup_timeout == 2.5 and settings.prefix == "cw-test"
    with pytest.raises(AttributeError):
        settings.prefix = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STARTUP_TIMEOUT", "abc", "STARTUP_TIMEOUT: expected a number of seconds, got 'abc'"),
        ("STARTUP_TIMEOUT", "-1", "STARTUP_TIMEOUT: expected a number of seconds >= 0, got '-1'"),
        ("STARTUP_TIMEOUT", "nan", "STARTUP_TIMEOUT: expected a number of seconds >= 0, got 'nan'"),
        ("REDIS_SENTINELS", "s1:26379,nohost", "REDIS_SENTINELS: 'nohost' is not host:port"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: expected a redis://, rediss:// or unix:// URL"),
        ("CRONWORK_PREFIX", "cron:work", "CRONWORK_PREFIX: expected 1-32 of letters, digits"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        CronworkSettings.from_env({variable: value})
    assert str(info.value).startswith(message)


def test_where_redis_is_never_shows_the_password() -> None:
    direct = CronworkSettings(redis_url="redis://user:secret@redis:6379/0")
    assert describe_redis(direct) == "redis://user:***@redis:6379/0"
    assert mask_url("redis://redis:6379/0") == "redis://redis:6379/0"
    sentinel = CronworkSettings.from_env({"REDIS_URL": "redis://:pw@x/1", "REDIS_SENTINELS": "a:1,b:2"})
    assert describe_redis(sentinel) == "sentinel master 'mymaster' via a:1,b:2"
