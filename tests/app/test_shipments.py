"""process_scheduled_shipments with the local carrier: due boundary, claims, failures, resumes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask import Flask
from rq.timeouts import JobTimeoutException
from sqlalchemy import func, select

from app.extensions import db
from app.models import Notification, Rental, RentalStatus, ShipmentEvent, ShipmentEventKind, User, now_utc
from app.services.carriers import CarrierError, LocalCarrier, LocalMarketplace, local_tracking_number
from app.services.shipments import (
    SHIPPING_LEASE,
    RetryRefused,
    claim_rental,
    process_scheduled_shipments,
    retry_rental,
)

pytestmark = pytest.mark.both_databases  # dialect-specific SQL: prove it on both

SECOND, MINUTE = timedelta(seconds=1), timedelta(minutes=1)


@pytest.fixture
def now(app: Flask) -> datetime:
    # Claims are stamped with the clock (the lease), so the run's `now` is the present.
    return now_utc().replace(microsecond=0)


def add_rental(ship_at: datetime, status: RentalStatus = RentalStatus.PENDING, **fields: object) -> int:
    rental = Rental(item_name="Kayak", customer="Li Wei", status=status, ship_at=ship_at, **fields)
    db.session.add(rental)
    db.session.commit()
    return rental.id


def rental(rental_id: int) -> Rental:
    db.session.expire_all()
    return db.session.get(Rental, rental_id)


def events(kind: ShipmentEventKind) -> list[int]:
    """Rental ids of the local carrier's bookings or the local marketplace's notices."""
    return list(db.session.scalars(select(ShipmentEvent.rental_id).where(ShipmentEvent.kind == kind)))


def run(
    now: datetime, carrier: object | None = None, marketplace: object | None = None, max_attempts: int = 5
) -> dict[str, int]:
    return process_scheduled_shipments(
        now, carrier or LocalCarrier(), marketplace or LocalMarketplace(), worker="test-worker", max_attempts=max_attempts
    )


def counts(**given: int) -> dict[str, int]:
    """A run's summary: the counts given, 0 for the others."""
    return {"total": 0, "success": 0, "failed": 0, "retrying": 0, "retried": 0, "skipped": 0, **given}


class FlakyCarrier(LocalCarrier):
    """The local carrier, down for some rentals."""

    def __init__(self, down_for: set[int], error: Exception | None = None) -> None:
        self.down_for = down_for
        self.error = error or CarrierError("carrier POST http://carrier/bookings: HTTP 422 no such address")

    def book(self, rental: Rental) -> str:
        if rental.id in self.down_for:
            raise self.error
        return super().book(rental)


class DownMarketplace(LocalMarketplace):
    def notify_shipped(self, rental: Rental, tracking_number: str) -> None:
        raise CarrierError("marketplace POST http://market/shipments: timed out after 10 s", transient=True)


def test_due_now_ships_and_due_one_second_from_now_waits(now: datetime) -> None:
    due = add_rental(now)
    soon = add_rental(now + SECOND)
    assert run(now) == counts(total=1, success=1, failed=0, skipped=0)
    shipped = rental(due)
    assert shipped.status is RentalStatus.SHIPPED
    assert shipped.tracking_number == local_tracking_number(due)
    assert shipped.carrier_booked_at and shipped.marketplace_notified_at and shipped.shipped_at
    assert (shipped.attempts, shipped.claimed_by, shipped.last_error) == (1, None, None)
    assert rental(soon).status is RentalStatus.PENDING
    assert events(ShipmentEventKind.CARRIER_BOOKING) == events(ShipmentEventKind.MARKETPLACE_NOTICE) == [due]
    # One second later it is due; the shipped one is never booked again.
    assert run(now + SECOND) == counts(total=1, success=1, failed=0, skipped=0)
    assert events(ShipmentEventKind.CARRIER_BOOKING) == [due, soon]


def test_carrier_down_fails_that_rental_and_ships_the_rest(now: datetime) -> None:
    ids = [add_rental(now - MINUTE) for _ in range(3)]
    assert run(now, carrier=FlakyCarrier({ids[1]})) == counts(total=3, success=2, failed=1, skipped=0)
    failed = rental(ids[1])
    assert failed.status is RentalStatus.FAILED
    assert failed.last_error == "CarrierError: carrier POST http://carrier/bookings: HTTP 422 no such address"
    assert (failed.tracking_number, failed.carrier_booked_at, failed.claimed_by) == (None, None, None)
    assert [rental(i).status for i in (ids[0], ids[2])] == [RentalStatus.SHIPPED] * 2
    assert run(now)["total"] == 0  # failed is final: an operator decides


def test_unexpected_error_is_isolated_too(now: datetime) -> None:
    ids = [add_rental(now - MINUTE) for _ in range(2)]
    summary = run(now, carrier=FlakyCarrier({ids[0]}, KeyError("tracking")))
    assert summary == counts(total=2, success=1, failed=1, skipped=0)
    assert rental(ids[0]).last_error == "KeyError: 'tracking'"


def test_marketplace_failure_is_renotified_next_time_never_rebooked(now: datetime) -> None:
    rid = add_rental(now - MINUTE)
    assert run(now, marketplace=DownMarketplace()) == counts(total=1, retrying=1)
    half = rental(rid)
    assert half.status is RentalStatus.PENDING and half.retry_at == now + MINUTE
    assert half.carrier_booked_at is not None and half.tracking_number == local_tracking_number(rid)
    assert half.last_error.startswith("CarrierError: marketplace POST")
    assert run(now) == counts()  # not before its retry_at
    assert run(now + MINUTE) == counts(total=1, success=1, retried=1)
    assert rental(rid).status is RentalStatus.SHIPPED
    assert events(ShipmentEventKind.CARRIER_BOOKING) == [rid]
    assert events(ShipmentEventKind.MARKETPLACE_NOTICE) == [rid]


def test_a_transient_carrier_failure_is_retried_with_backoff_then_failed_with_an_alert(now: datetime) -> None:
    admin = User(username="ops", email="ops@example.com", is_admin=True)
    db.session.add(admin)
    db.session.commit()
    rid = add_rental(now - MINUTE)
    down = FlakyCarrier({rid}, CarrierError("carrier POST http://carrier/bookings: HTTP 503 busy", transient=True))
    at, waits = now, []
    for attempt in range(1, 4):
        assert run(at, carrier=down, max_attempts=3) == counts(
            total=1, retrying=int(attempt < 3), failed=int(attempt == 3), retried=int(attempt > 1)
        )
        state = rental(rid)
        assert state.attempts == attempt
        if attempt < 3:
            assert state.status is RentalStatus.PENDING
            waits.append(state.retry_at - at)
            assert run(state.retry_at - SECOND, carrier=down, max_attempts=3) == counts()  # not yet due
            at = state.retry_at
    assert waits == [MINUTE, 2 * MINUTE]  # 1 min doubling (RETRY_BACKOFF)
    failed = rental(rid)
    assert (failed.status, failed.retry_at) == (RentalStatus.FAILED, None)
    assert failed.last_error == "CarrierError: carrier POST http://carrier/bookings: HTTP 503 busy"
    alert = db.session.scalars(select(Notification).where(Notification.user_id == admin.id)).one()
    assert alert.kind == "shipment" and f"rental {rid} failed (after 3 attempts)" in alert.title
    assert f"shipments retry {rid}" in alert.body


def test_a_failed_rental_put_back_ships_and_nothing_else_can_be_put_back(now: datetime) -> None:
    rid = add_rental(now - MINUTE)
    run(now, carrier=FlakyCarrier({rid}))
    assert rental(rid).status is RentalStatus.FAILED
    put_back = retry_rental(rid)
    assert (put_back.status, put_back.attempts, put_back.retry_at) == (RentalStatus.PENDING, 0, None)
    assert run(now) == counts(total=1, success=1)
    with pytest.raises(RetryRefused, match=f"rental {rid} is shipped, not failed"):
        retry_rental(rid)
    with pytest.raises(RetryRefused, match="no rental 999999"):
        retry_rental(999_999)


def test_abandoned_shipment_resumes_after_its_lease_without_rebooking(now: datetime) -> None:
    booked = {"tracking_number": "CW123", "carrier_booked_at": now - SHIPPING_LEASE, "claimed_by": "dead"}
    stale = add_rental(now - 2 * SHIPPING_LEASE, RentalStatus.SHIPPING, claimed_at=now - SHIPPING_LEASE - SECOND, **booked)
    live = add_rental(now - 2 * SHIPPING_LEASE, RentalStatus.SHIPPING, claimed_at=now - MINUTE, **booked)
    assert run(now) == counts(total=1, success=1, failed=0, skipped=0)
    assert rental(stale).status is RentalStatus.SHIPPED
    assert rental(stale).tracking_number == "CW123"
    assert rental(live).status is RentalStatus.SHIPPING  # its worker may still be on it
    assert events(ShipmentEventKind.CARRIER_BOOKING) == []
    assert events(ShipmentEventKind.MARKETPLACE_NOTICE) == [stale]


def test_a_rental_is_claimed_once(now: datetime) -> None:
    rid = add_rental(now)
    assert claim_rental(rid, now, "a") is not None
    assert claim_rental(rid, now, "b") is None
    assert (rental(rid).claimed_by, rental(rid).status) == ("a", RentalStatus.SHIPPING)


def test_job_timeout_is_not_swallowed(now: datetime) -> None:
    rid = add_rental(now)
    with pytest.raises(JobTimeoutException):
        run(now, carrier=FlakyCarrier({rid}, JobTimeoutException("timed out")))
    db.session.rollback()
    assert rental(rid).status is RentalStatus.SHIPPING  # its lease expires; then it resumes
    assert db.session.scalar(select(func.count()).select_from(ShipmentEvent)) == 0


def test_naive_now_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="naive"):
        run(datetime(2026, 1, 5, 9, 0, 0))
