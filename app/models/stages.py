"""Project stages that open and close on their dates (seed 001)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, now_utc
from app.models.columns import short_enum


class StageStatus(StrEnum):
    """pending → active at `start_date` → completed at `end_date`."""

    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"


class Stage(Base):
    """A dated stage; `update_stage_status` moves it along its life cycle."""

    __tablename__ = "stages"
    __table_args__ = (
        Index("ix_stages_status_start_date", "status", "start_date"),
        Index("ix_stages_status_end_date", "status", "end_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[StageStatus] = mapped_column(
        short_enum(StageStatus), default=StageStatus.PENDING
    )
    start_date: Mapped[datetime]
    end_date: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=now_utc, onupdate=now_utc)

    def __repr__(self) -> str:
        return f"<Stage {self.id} {self.status.value} {self.name!r}>"
