"""Rentals shipped on their date: claimed once, booked with a carrier, reported (seed 003)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.columns import short_enum


class RentalStatus(StrEnum):
    """pending → shipping (claimed by one worker) → shipped; back to pending (with `retry_at`)
    after a transient failure; failed after a permanent one or the last attempt."""

    PENDING = "pending"
    SHIPPING = "shipping"
    SHIPPED = "shipped"
    FAILED = "failed"


class Rental(Base):
    """An item to ship to a customer at `ship_at`.

    Each external step leaves a timestamp (`carrier_booked_at`, `marketplace_notified_at`)
    so a retried shipment resumes where it stopped instead of booking the carrier twice.
    """

    __tablename__ = "rentals"
    __table_args__ = (Index("ix_rentals_status_ship_at", "status", "ship_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_name: Mapped[str] = mapped_column(String(200))
    customer: Mapped[str] = mapped_column(String(200))
    status: Mapped[RentalStatus] = mapped_column(
        short_enum(RentalStatus), default=RentalStatus.PENDING
    )
    ship_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    tracking_number: Mapped[str | None] = mapped_column(String(64))
    carrier_booked_at: Mapped[datetime | None]
    marketplace_notified_at: Mapped[datetime | None]
    shipped_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    # After a transient carrier or marketplace failure: not due again before this instant.
    retry_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<Rental {self.id} {self.status.value} {self.item_name!r}>"
