"""Shared extension objects: the SQLAlchemy handle and the Redis connection factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from redis.sentinel import Sentinel

from app.models.base import Base

db = SQLAlchemy(model_class=Base)
# Alembic owns the schema (`flask --app app db upgrade`); batch mode lets SQLite ALTER tables.
migrate = Migrate(render_as_batch=True, compare_type=True)

# Short socket timeouts: a Redis that is not there must fail fast, never hang.
REDIS_SOCKET_TIMEOUT = 5.0
REDIS_CONNECT_TIMEOUT = 2.0


def make_redis(url: str) -> Redis:
    """A Redis client for `url`; connects lazily on first command."""
    return Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=30,
    )


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` → [(host, port), ...]."""
    nodes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        nodes.append((host, int(port)))
    return nodes


def redis_from_config(config: Mapping[str, Any]) -> Redis:
    """The Redis client the settings ask for: through Sentinel when REDIS_SENTINELS is set
    (password and db still come from REDIS_URL), else straight from REDIS_URL."""
    sentinels = config.get("REDIS_SENTINELS") or ""
    if not sentinels:
        return make_redis(config["REDIS_URL"])
    parts = urlsplit(config["REDIS_URL"])
    db_index = int(parts.path.lstrip("/") or 0)
    timeouts = {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT}
    sentinel = Sentinel(parse_sentinels(sentinels), **timeouts)
    # A client that asks the sentinels for the current master on every (re)connection, so a
    # failover is a reconnect, not an outage.
    return sentinel.master_for(
        config.get("REDIS_SENTINEL_MASTER") or "mymaster", password=parts.password, db=db_index, **timeouts
    )


def describe_redis(config: Mapping[str, Any]) -> str:
    """Where Redis is, for messages (password masked)."""
    from app.readiness import mask_url

    if config.get("REDIS_SENTINELS"):
        master = config.get("REDIS_SENTINEL_MASTER") or "mymaster"
        return f"sentinel master {master!r} via {config['REDIS_SENTINELS']}"
    return mask_url(config["REDIS_URL"])


def get_redis(app: Flask | None = None) -> Redis:
    """The app's Redis client, created on first use and cached on the app."""
    # ignore: Flask types current_app as Flask, but it is a LocalProxy to unwrap.
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    client = app.extensions.get("cronwork_redis")
    if client is None:
        client = redis_from_config(app.config)
        app.extensions["cronwork_redis"] = client
    return client
