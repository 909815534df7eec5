"""`INSERT … ON CONFLICT` for the session's dialect: the jobs' idempotent writes (a rerun of a
day rewrites or skips the same rows) on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


def upsert_insert(table: Table) -> sqlite.Insert | postgresql.Insert:
    """An insert of `table` that has `on_conflict_do_update` / `on_conflict_do_nothing`."""
    name = db.session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"INSERT … ON CONFLICT is not implemented here for dialect {name!r}")
