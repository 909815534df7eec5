"""Shared extension objects: SQLAlchemy, Alembic and `cronwork` (Redis, keys, settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis

from app.models.base import Base
from cronwork.connection import REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT, make_redis, redis_from_settings
from cronwork.connection import describe_redis as describe_settings
from cronwork.keys import Keys
from cronwork.settings import CronworkSettings, parse_sentinels

__all__ = [
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_SOCKET_TIMEOUT",
    "Cronwork",
    "CronworkState",
    "cronwork",
    "db",
    "describe_redis",
    "make_redis",
    "migrate",
    "parse_sentinels",
    "redis_from_config",
]

db = SQLAlchemy(model_class=Base)
# Alembic owns the schema (`flask --app app db upgrade`); batch mode lets SQLite ALTER tables.
migrate = Migrate(render_as_batch=True, compare_type=True)

EXTENSION = "cronwork"


class CronworkState:
    """Cronwork bound to one app: its settings, its keys and its Redis client (made lazily)."""

    def __init__(self, settings: CronworkSettings) -> None:
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._connection: Redis | None = None

    @property
    def connection(self) -> Redis:
        """The app's Redis client, created on first use (no I/O before a command)."""
        if self._connection is None:
            self._connection = redis_from_settings(self.settings)
        return self._connection


class Cronwork:
    """The flask-rq pattern: `cronwork = Cronwork()`, then `cronwork.init_app(app)` in the factory.

    Settings are read and validated once, in init_app (a bad one fails naming its variable);
    nothing connects until the first Redis command.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Bind to `app`: settings from its config, keys from the prefix. No I/O."""
        app.extensions[EXTENSION] = CronworkState(CronworkSettings.from_mapping(app.config))

    def state(self, app: Flask | None = None) -> CronworkState:
        """The state bound to `app` (default: the current app)."""
        # ignore: Flask types current_app as Flask, but it is a LocalProxy to unwrap.
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            state: CronworkState = app.extensions[EXTENSION]
        except KeyError:
            raise RuntimeError("Cronwork is not set up on this app: call cronwork.init_app(app)") from None
        return state

    def redis(self, app: Flask | None = None) -> Redis:
        """The app's Redis client."""
        return self.state(app).connection

    def use_connection(self, app: Flask, connection: Redis) -> None:
        """Make `connection` the app's client (a worker shares one client with rq)."""
        self.state(app)._connection = connection

    def keys(self, app: Flask | None = None) -> Keys:
        return self.state(app).keys

    def settings(self, app: Flask | None = None) -> CronworkSettings:
        return self.state(app).settings


cronwork = Cronwork()


def redis_from_config(config: Mapping[str, Any]) -> Redis:
    """A new client for a Flask config mapping (app.ops.dashboard); prefer `cronwork.redis`."""
    return redis_from_settings(CronworkSettings.from_mapping(config))


def describe_redis(config: Mapping[str, Any]) -> str:
    """Where Redis is, for messages (password masked)."""
    return describe_settings(CronworkSettings.from_mapping(config))
