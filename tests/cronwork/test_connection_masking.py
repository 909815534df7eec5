"""Every secret in a URL is masked wherever Cronwork shows one (issue 13): the userinfo password
and query parameters such as ?password= (redis-py and libpq read both)."""

from __future__ import annotations

import pytest

from app.config import database_url
from app.embedded_redis import free_port
from cronwork.connection import ServiceUnavailable, mask_url, wait_for_redis
from cronwork.settings import CronworkSettings, SettingsError

SECRET = "Hunter2-Query"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://user:pw@redis:6379/0", "redis://user:***@redis:6379/0"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user@redis:6379/0", "redis://user@redis:6379/0"),  # a user name is no secret
        ("redis://redis:6379/0?password=pw", "redis://redis:6379/0?password=***"),
        ("rediss://redis:6380/0?db=1&password=pw&ssl_cert_reqs=none",
         "rediss://redis:6380/0?db=1&password=***&ssl_cert_reqs=none"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
        ("postgresql+psycopg://cw@db/cw?sslpassword=pw&application_name=cronwork",
         "postgresql+psycopg://cw@db/cw?sslpassword=***&application_name=cronwork"),
        ("postgresql://u:p@db/cw?PASSWORD=a&Token=b&api_key=c&x-auth=d&secret=e&credentials=f",
         "postgresql://u:***@db/cw?PASSWORD=***&Token=***&api_key=***&x-auth=***&secret=***&credentials=***"),
        ("postgresql://db/cw?pass%77ord=pw", "postgresql://db/cw?pass%77ord=***"),  # an encoded name
        ("redis://h/0?password=", "redis://h/0?password="),  # nothing to hide
        ("redis://h/0?password=pw#frag", "redis://h/0?password=***#frag"),
        ("redis://u:p@w@h/0", "redis://u:***@h/0"),  # an unencoded @ in the password
        ("postgresql://u:p@host:notaport/db", "postgresql://u:***@host:notaport/db"),  # urlsplit raises
        ("sqlite:////abs/cronwork.db", "sqlite:////abs/cronwork.db"),  # urlunsplit drops a slash
        ("sqlite:///relative.db", "sqlite:///relative.db"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_waiting_for_redis_names_it_with_the_query_password_masked(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password={SECRET}"
    with pytest.raises(ServiceUnavailable) as failed:
        wait_for_redis(CronworkSettings(redis_url=url), timeout=0.3)
    assert f"cannot reach Redis at {url.replace(SECRET, '***')} after" in str(failed.value)
    assert SECRET not in str(failed.value)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_settings_errors_mask_the_database_url() -> None:
    with pytest.raises(SettingsError) as no_driver:
        database_url({"DATABASE_URL": f"nosuchdb://u:{SECRET}@h/db?password={SECRET}"})
    assert SECRET not in str(no_driver.value) and "nosuchdb://u:***@h/db?password=***" in str(no_driver.value)
