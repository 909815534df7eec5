"""Demo rentals, in every state process_scheduled_shipments meets (due, shipped, half done...)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from app.demo.rows import Row, ago
from app.models import RentalStatus

# fmt: off
RENTAL_SCENARIOS = {
    "due": 30, "due_soon": 20, "later": 15, "shipped": 20, "failed": 7, "half_done": 8,
}
# fmt: on
ITEMS = ["Camera kit", "Tent 4p", "Projector", "Drone", "E-bike", "Sound system", "Kayak"]
CUSTOMERS = ["Li Wei", "Zhang Min", "Ana Souza", "Tom Becker", "Priya Nair", "Kenji Sato"]


def rental_row(rng: random.Random, now: datetime, kind: str, i: int) -> Row:
    """One rental; `due` ones (and `half_done`, a crashed shipment) are for the next run."""
    minute, hour, day = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
    row: Row = {
        "item_name": f"{rng.choice(ITEMS)} #{i + 1}",
        "customer": rng.choice(CUSTOMERS),
        "status": RentalStatus.PENDING,
        "claimed_by": None,
        "claimed_at": None,
        "tracking_number": None,
        "carrier_booked_at": None,
        "marketplace_notified_at": None,
        "shipped_at": None,
        "last_error": None,
        "attempts": 0,
    }
    if kind == "due":
        row["ship_at"] = ago(now, rng, 0 * minute, 20 * minute)
    elif kind == "due_soon":
        row["ship_at"] = now + timedelta(seconds=rng.randint(60, 15 * 60))
    elif kind == "later":
        row["ship_at"] = now + timedelta(seconds=rng.randint(3600, 7 * 86400))
    else:
        ship_at = ago(now, rng, 2 * hour, 30 * day)
        claimed = ship_at + timedelta(seconds=rng.randint(1, 300))
        row.update(ship_at=ship_at, claimed_by=f"worker-{rng.randint(1, 4)}", attempts=1)
        row["claimed_at"] = claimed
        if kind in ("shipped", "half_done"):
            row.update(
                tracking_number=f"CW{rng.randrange(10**9, 10**10)}",
                carrier_booked_at=claimed + minute,
            )
        if kind == "shipped":
            row.update(
                status=RentalStatus.SHIPPED,
                marketplace_notified_at=claimed + 2 * minute,
                shipped_at=claimed + 2 * minute,
            )
        elif kind == "half_done":  # its worker died after booking the carrier: resume, never rebook
            claimed = ago(now, rng, hour, 2 * hour)  # ship_at is at least 2 h ago
            row.update(status=RentalStatus.SHIPPING, claimed_at=claimed)
            row["carrier_booked_at"] = claimed + minute
        else:
            row.update(
                status=RentalStatus.FAILED,
                attempts=3,
                claimed_by=None,
                last_error="carrier API timed out after 10 s (3 attempts)",
            )
    return row
