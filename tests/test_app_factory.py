"""create_app() must do no I/O: no connection, no table, no scheduler, no thread."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from redis import Redis

from app import create_app
from app.extensions import cronwork
from cronwork.keys import Keys
from cronwork.settings import SettingsError


def test_create_app_touches_neither_redis_nor_the_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"create_app opened a connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    missing_db = tmp_path / "no" / "such" / "dir" / "x.db"
    threads_before = threading.active_count()

    app = create_app(
        {"REDIS_URL": "redis://127.0.0.1:1/0", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{missing_db}"}
    )

    assert app.name == "app"
    assert attempts == []
    assert not missing_db.parent.exists()
    assert threading.active_count() == threads_before


def test_importing_the_app_module_starts_no_scheduler() -> None:
    import app as app_module

    create_app()
    names = [t.name for t in threading.enumerate()]
    assert not any("sched" in n.lower() for n in names), names
    assert not hasattr(app_module, "scheduler")


def test_one_cronwork_state_per_app_built_from_its_settings() -> None:
    """The extension pattern: settings and keys once per app, one lazy client reused."""
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/3", "CRONWORK_PREFIX": "cw-a"})
    other = create_app({"CRONWORK_PREFIX": "cw-b"})
    assert cronwork.keys(app) == Keys("cw-a") and cronwork.keys(other) == Keys("cw-b")
    assert cronwork.settings(app).redis_url == "redis://127.0.0.1:1/3"
    client = cronwork.redis(app)
    assert isinstance(client, Redis) and client is cronwork.redis(app)
    assert client is not cronwork.redis(other)
    with app.app_context():
        assert cronwork.redis() is client and cronwork.keys().prefix == "cw-a"


def test_a_bad_setting_fails_create_app_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARTUP_TIMEOUT", "abc")
    with pytest.raises(SettingsError, match=r"^STARTUP_TIMEOUT: expected a number of seconds, got 'abc'$"):
        create_app()
    monkeypatch.delenv("STARTUP_TIMEOUT")
    monkeypatch.setenv("CARRIER_TIMEOUT", "soon")
    with pytest.raises(SettingsError, match="^CARRIER_TIMEOUT: expected a number of seconds"):
        create_app()
