"""rq-dashboard gets the app's Redis (direct or through Sentinel) with timeouts, never a default."""

from __future__ import annotations

from redis_sentinel_url import parse_sentinel_url

from app.ops.dashboard import dashboard_redis_url


def test_direct_url_keeps_password_and_db_and_gains_timeouts() -> None:
    url = dashboard_redis_url({"REDIS_URL": "redis://:s3cret@cache:6380/2"})
    assert url == "redis://:s3cret@cache:6380/2?socket_timeout=5.0&socket_connect_timeout=2.0"


def test_sentinel_settings_become_a_sentinel_url_rq_dashboard_can_parse() -> None:
    config = {
        "REDIS_URL": "redis://:s3cret@ignored:6379/3",
        "REDIS_SENTINELS": "s1:26379, s2:26380",
        "REDIS_SENTINEL_MASTER": "cronwork",
    }
    parsed = parse_sentinel_url(dashboard_redis_url(config))
    assert parsed.hosts == [("s1", 26379), ("s2", 26380)]
    assert parsed.default_client.service == "cronwork"
    assert parsed.client_options == {
        "password": "s3cret",
        "db": 3,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
    }
