"""`flask --app app users create-admin USERNAME --email ADDRESS`: the admin alerts are for."""

from __future__ import annotations

import click
from sqlalchemy import select

from app.cli.group import CommandGroup
from app.extensions import db
from app.models import User
from app.ops.audit_log import audited
from app.services.alerts import flush_pending
from cronwork.audit import Action, Source

users_cli = CommandGroup("users", help="Users: create an admin (alerts wait for one).")


@users_cli.command("create-admin")
@click.argument("username")
@click.option("--email", required=True, help="the admin's address")
def create_admin(username: str, email: str) -> None:
    """Create admin USERNAME (or make that user an admin), then deliver every alert kept in
    Redis while no admin existed."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is not None and user.is_admin:
        raise click.ClickException(f"{username} is already an admin")
    with audited(Source.CLI, Action.CREATE_ADMIN, target=f"user:{username}"):
        if user is None:
            db.session.add(User(username=username, email=email, is_admin=True))
        else:
            user.is_admin = True
        db.session.commit()
    delivered = flush_pending()
    click.echo(f"admin {username} ready; {delivered} waiting alert(s) delivered")
