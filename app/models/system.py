"""Operational rows: the heartbeat that proves the job pipeline runs end to end."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

HEALTH_CHECK_HEARTBEAT = "health_check"


class Heartbeat(Base):
    """The last beat of a named component; the `health_check` job upserts its row.

    `/healthz` reads the age of `beat_at` of the row named `HEALTH_CHECK_HEARTBEAT`.
    """

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime]
    job_id: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(String(500))

    def __repr__(self) -> str:
        return f"<Heartbeat {self.name!r} {self.beat_at.isoformat()}>"
