"""In-app notifications to users: task warnings, resets, alerts, job failures, reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, now_utc
from app.models.users import User


class NotificationKind(StrEnum):
    """The kinds the jobs write; the column is a plain string, open to new kinds."""

    TASK_WARNING = "task_warning"
    PERIODIC_RESET = "periodic_reset"
    SETPOINT_ALERT = "setpoint_alert"
    JOB_FAILURE = "job_failure"
    DAILY_REPORT = "daily_report"
    SHIPMENT = "shipment"


class Notification(Base):
    """A message for one user; `read_at` is set when `is_read` becomes true."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_id_is_read", "user_id", "is_read"),
        Index("ix_notifications_is_read_created_at", "is_read", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    is_read: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
    read_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<Notification {self.id} {self.kind} user={self.user_id}>"
