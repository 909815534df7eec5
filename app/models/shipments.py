"""What the built-in local carrier and marketplace did: one row per external call (seed 000).

Deliberately no unique constraint on `rental_id`: a real carrier books whatever it is asked
to book, so a double booking must be visible here (tests and the benchmark count them).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, now_utc
from app.models.columns import short_enum


class ShipmentEventKind(StrEnum):
    """The external calls a shipment makes."""

    CARRIER_BOOKING = "carrier_booking"
    MARKETPLACE_NOTICE = "marketplace"


class ShipmentEvent(Base):
    """One call to the local carrier (a booking) or the local marketplace (a notice)."""

    __tablename__ = "shipment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    rental_id: Mapped[int] = mapped_column(ForeignKey("rentals.id"), index=True)
    kind: Mapped[ShipmentEventKind] = mapped_column(short_enum(ShipmentEventKind))
    tracking_number: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now_utc)

    def __repr__(self) -> str:
        return f"<ShipmentEvent {self.kind.value} rental={self.rental_id} {self.tracking_number}>"
