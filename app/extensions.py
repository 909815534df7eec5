"""Shared extension objects: the SQLAlchemy handle and the Redis connection factory."""

from __future__ import annotations

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis

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


def get_redis(app: Flask | None = None) -> Redis:
    """The app's Redis client, created on first use and cached on the app."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    client = app.extensions.get("cronwork_redis")
    if client is None:
        client = make_redis(app.config["REDIS_URL"])
        app.extensions["cronwork_redis"] = client
    return client
