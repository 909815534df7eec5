"""The command group every `flask --app app ...` group is made of: a service that does not
answer is one line on stderr and exit 1, never a traceback (issue 12)."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup, ScriptInfo
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import cronwork
from app.logs import quiet_for_commands
from app.readiness import ServiceUnavailable, database_error, describe_database
from cronwork.connection import describe_redis


class CommandGroup(AppGroup):
    """An AppGroup whose commands report an unreachable Redis or database in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with quiet_for_commands():
                return super().invoke(ctx)
        except ServiceUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except RedisError as exc:
            # The command's app context is gone by now: ask the app that ran it.
            app = ctx.ensure_object(ScriptInfo).load_app()
            raise click.ClickException(f"Redis at {describe_redis(cronwork.settings(app))}: {exc}") from None
        except SQLAlchemyError as exc:
            app = ctx.ensure_object(ScriptInfo).load_app()
            where = describe_database(app)
            raise click.ClickException(f"the database at {where}: {database_error(exc)}") from None
