"""create_app() must do no I/O: no connection, no table, no scheduler, no thread."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from app import create_app


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
