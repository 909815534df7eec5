"""Scheduled shipments (seed 000): claim each due rental once, book the carrier, tell the market.

Every step leaves its mark before the next external call, each in its own commit:

1. claim — a conditional UPDATE (`pending` and due, or `shipping` with a lease older than
   `SHIPPING_LEASE`, i.e. its worker died) sets `shipping`; zero rows means another run won;
2. book — skipped when `carrier_booked_at` is set: a rental is never booked twice;
3. notify the marketplace — then `shipped`.

A failure is confined to its rental and keeps its error. A transient one (a timeout, a refused
connection, a 5xx: `CarrierError.transient`) puts the rental back to `pending` with a
`retry_at` growing with its attempts (1 min, 2, 4 … at most 1 h), so a later run tries again;
after `max_attempts` tries, or at once for a permanent failure, it is `failed` and the admins
get a notification. A rental already booked is never booked again: its retry only
re-notifies the marketplace. `retry_rental` puts a failed rental back by hand. Job timeouts
are never caught: the rental stays `shipping`
and its lease expires. (If the database fails right after the carrier booked, the booking is
not recorded and the next run books again: the HTTP carrier sends an Idempotency-Key per
rental so that a carrier honouring it returns the same booking.)
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from redis.backoff import ExponentialBackoff
from rq.timeouts import JobTimeoutException
from sqlalchemy import ColumnElement, and_, or_, select, update

from app.extensions import db
from app.models import NotificationKind, Rental, RentalStatus, now_utc
from app.services.alerts import Alert, alert_admins
from app.services.carriers import Carrier, CarrierError, Marketplace

logger = logging.getLogger(__name__)

SHIPPING_LEASE = timedelta(minutes=30)  # above any job timeout: a live claim is never stolen
SHIPMENT_BATCH = 500  # due rental ids read per query
ERROR_MAX = 1_000  # characters of an error kept on the rental
DEFAULT_MAX_ATTEMPTS = 5  # tries of one rental before it is failed for good (SHIPMENT_MAX_ATTEMPTS)
# Wait before trying a rental again after its n-th transient failure: 1 min doubling up to 1 h.
RETRY_BACKOFF = ExponentialBackoff(cap=3600.0, base=60.0)


class RetryRefused(ValueError):
    """`retry_rental` refused: see the subclasses."""


class UnknownRental(RetryRefused):
    """No rental has that id."""


class NotFailed(RetryRefused):
    """The rental is not failed: there is nothing to put back."""


def due_clause(now: datetime) -> ColumnElement[bool]:
    """Rentals a run at `now` may claim: pending and due, or abandoned mid-shipment."""
    return or_(
        and_(
            Rental.status == RentalStatus.PENDING,
            Rental.ship_at <= now,
            or_(Rental.retry_at.is_(None), Rental.retry_at <= now),
        ),
        and_(Rental.status == RentalStatus.SHIPPING, Rental.claimed_at < now - SHIPPING_LEASE),
    )


def claim_rental(rental_id: int, now: datetime, worker: str) -> Rental | None:
    """Claim one rental with a conditional UPDATE and commit; None when another run has it."""
    rental = db.session.scalars(
        update(Rental)
        .where(Rental.id == rental_id, due_clause(now))
        .values(
            status=RentalStatus.SHIPPING,
            claimed_by=worker,
            claimed_at=now_utc(),
            attempts=Rental.attempts + 1,
        )
        .returning(Rental),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).one_or_none()
    db.session.commit()
    return rental


def ship_rental(rental: Rental, carrier: Carrier, marketplace: Marketplace) -> None:
    """Book (unless already booked) and notify for a claimed rental; commit after each step."""
    if rental.carrier_booked_at is None:
        rental.tracking_number = carrier.book(rental)
        rental.carrier_booked_at = now_utc()
        rental.last_error = None
        db.session.commit()
        logger.info("carrier booked rental_id=%d tracking=%s", rental.id, rental.tracking_number)
    else:
        logger.info("carrier already booked rental_id=%d tracking=%s", rental.id, rental.tracking_number)
    marketplace.notify_shipped(rental, rental.tracking_number or "")
    shipped = now_utc()
    rental.marketplace_notified_at = shipped
    rental.shipped_at = shipped
    rental.status = RentalStatus.SHIPPED
    rental.claimed_by = None
    rental.last_error = None
    rental.retry_at = None
    db.session.commit()
    logger.info("marketplace notified rental_id=%d status=shipped", rental.id)


def record_failure(rental_id: int, exc: Exception, now: datetime, max_attempts: int) -> bool:
    """Store the error; True when the rental will be tried again (back to `pending` with a
    `retry_at`), False when it is `failed` for good (and the admins are told)."""
    db.session.rollback()
    rental = db.session.get(Rental, rental_id, populate_existing=True)
    if rental is None:
        return False
    booked = rental.carrier_booked_at is not None
    rental.claimed_by = None
    rental.last_error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
    transient = isinstance(exc, CarrierError) and exc.transient
    retry = transient and rental.attempts < max_attempts
    if retry:
        rental.status = RentalStatus.PENDING
        rental.retry_at = now + timedelta(seconds=RETRY_BACKOFF.compute(rental.attempts - 1))
    else:
        rental.status = RentalStatus.FAILED
        rental.retry_at = None
        why = f"after {rental.attempts} attempts" if transient else "permanent error"
        alert_admins(
            Alert(
                NotificationKind.SHIPMENT,
                f"Shipment of rental {rental.id} failed ({why})",
                f"{rental.item_name} for {rental.customer}: {rental.last_error}\n"
                f"Put it back with: flask --app app shipments retry {rental.id}",
            )
        )
    db.session.commit()
    logger.warning(
        "shipment failed rental_id=%d step=%s status=%s attempt=%d retry_at=%s error=%s",
        rental_id,
        "marketplace" if booked else "carrier",
        rental.status.value,
        rental.attempts,
        rental.retry_at.isoformat() if rental.retry_at else "-",
        rental.last_error,
    )
    return retry


def retry_rental(rental_id: int) -> Rental:
    """Put a failed rental back: pending, due now, its attempts counted from zero again."""
    rental = db.session.get(Rental, rental_id, populate_existing=True)
    if rental is None:
        raise UnknownRental(f"no rental {rental_id}")
    if rental.status is not RentalStatus.FAILED:
        raise NotFailed(f"rental {rental_id} is {rental.status.value}, not failed")
    rental.status = RentalStatus.PENDING
    rental.attempts = 0
    rental.retry_at = None
    db.session.commit()
    logger.info("shipment put back rental_id=%d last_error=%s", rental.id, rental.last_error)
    return rental


def process_scheduled_shipments(
    now: datetime,
    carrier: Carrier,
    marketplace: Marketplace,
    worker: str,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> dict[str, int]:
    """Ship every rental due at `now`; return {total, success, failed, retrying, retried,
    skipped}: `failed` for good, `retrying` later after a transient failure, `retried` = the
    rentals of this run that had been tried before."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass an aware datetime")
    summary = {"total": 0, "success": 0, "failed": 0, "retrying": 0, "retried": 0, "skipped": 0}
    page = select(Rental.id).where(due_clause(now)).order_by(Rental.id).limit(SHIPMENT_BATCH)
    last_id = 0
    while ids := db.session.scalars(page.where(Rental.id > last_id)).all():
        last_id = ids[-1]
        for rental_id in ids:
            summary["total"] += 1
            rental = claim_rental(rental_id, now, worker)
            if rental is None:
                summary["skipped"] += 1
                logger.info("shipment skipped rental_id=%d reason=claimed_elsewhere", rental_id)
                continue
            logger.info(
                "shipment claimed rental_id=%d worker=%s attempt=%d", rental_id, worker, rental.attempts
            )
            summary["retried"] += rental.attempts > 1
            try:
                ship_rental(rental, carrier, marketplace)
            except JobTimeoutException:
                raise
            except Exception as exc:  # noqa: BLE001 - one rental's failure must not stop the batch
                summary["retrying" if record_failure(rental_id, exc, now, max_attempts) else "failed"] += 1
            else:
                summary["success"] += 1
    logger.info(
        "shipments processed total=%d success=%d failed=%d retrying=%d retried=%d skipped=%d now=%s",
        summary["total"],
        summary["success"],
        summary["failed"],
        summary["retrying"],
        summary["retried"],
        summary["skipped"],
        now.isoformat(),
    )
    return summary
