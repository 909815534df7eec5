"""Flask CLI commands (`flask --app app ...`)."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    """Attach every command group to the app."""
    from app.cli.demo import demo_cli
    from app.cli.failed import failed_cli
    from app.cli.schedules import schedules_cli
    from app.cli.shipments import shipments_cli
    from app.cli.users import users_cli

    for group in (demo_cli, failed_cli, schedules_cli, shipments_cli, users_cli):
        app.cli.add_command(group)
