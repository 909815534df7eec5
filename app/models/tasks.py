"""Tasks with a handler, a progress, a time progress and an optional period (seed 002)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, now_utc
from app.models.columns import short_enum
from app.models.users import User

DEFAULT_PERIOD_DAYS = 7


class TaskStatus(StrEnum):
    """Life cycle of a task: new → processing → completed → closed (periodic ones reset to new)."""

    NEW = "new"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CLOSED = "closed"


class Task(Base):
    """A unit of work owned by a handler.

    `progress` is the handler's own estimate (0–100); `time_progress` is the share of the
    expected window already elapsed (0.0–100.0), recomputed by `update_time_progress`.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status", "status"),
        Index("ix_tasks_is_periodic_status", "is_periodic", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    handler_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[TaskStatus] = mapped_column(short_enum(TaskStatus), default=TaskStatus.NEW)
    is_periodic: Mapped[bool] = mapped_column(default=False)
    period_days: Mapped[int] = mapped_column(default=DEFAULT_PERIOD_DAYS)
    progress: Mapped[int] = mapped_column(default=0)
    time_progress: Mapped[float] = mapped_column(default=0.0)
    expected_start: Mapped[datetime | None]
    expected_end: Mapped[datetime | None]
    actual_start: Mapped[datetime | None]
    actual_end: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(default=now_utc, onupdate=now_utc)

    handler: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.status.value} {self.title!r}>"
