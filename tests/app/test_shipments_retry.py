"""A failed shipment put back by an operator: from the CLI and the API, audited (issue 14, point 6)."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from app.extensions import db
from app.models import Rental, RentalStatus, now_utc
from cronwork.audit import AuditEntry, recent
from tests.app.conftest import KEYS, bearer

LAST_ERROR = "CarrierError: carrier POST http://carrier/bookings: HTTP 503 busy"


def failed_rental() -> int:
    rental = Rental(
        item_name="Tent",
        customer="Ana Souza",
        status=RentalStatus.FAILED,
        ship_at=now_utc() - timedelta(hours=1),
        attempts=5,
        last_error=LAST_ERROR,
    )
    db.session.add(rental)
    db.session.commit()
    return rental.id


def status_of(rental_id: int) -> RentalStatus:
    db.session.expire_all()
    return db.session.get(Rental, rental_id).status


def test_the_cli_puts_a_failed_rental_back_and_refuses_anything_else(ops_app: Flask, redis: Redis) -> None:
    rid = failed_rental()
    runner = ops_app.test_cli_runner()
    done = runner.invoke(args=["shipments", "retry", str(rid)])
    assert done.exit_code == 0, done.output
    assert done.output == f"rental {rid} is pending again (last error: {LAST_ERROR})\n"
    assert status_of(rid) is RentalStatus.PENDING
    again = runner.invoke(args=["shipments", "retry", str(rid)])
    assert again.exit_code == 1 and f"rental {rid} is pending, not failed" in again.output
    entries = [e for e in recent(redis, KEYS, limit=2) if isinstance(e, AuditEntry)]
    assert [(e.action, e.source, e.outcome, e.target) for e in entries] == [
        ("shipment_retry", "cli", "refused", f"rental:{rid}"),
        ("shipment_retry", "cli", "ok", f"rental:{rid}"),
    ]


def test_the_api_puts_a_failed_rental_back_404_for_an_unknown_one_409_for_one_not_failed(
    client: FlaskClient,
) -> None:
    rid = failed_rental()
    done = client.post(f"/api/shipments/{rid}/retry", headers=bearer())
    assert done.status_code == 200
    assert done.get_json() == {
        "rental_id": rid,
        "status": "pending",
        "last_error": LAST_ERROR,
    }
    assert status_of(rid) is RentalStatus.PENDING
    assert client.post(f"/api/shipments/{rid}/retry", headers=bearer()).status_code == 409
    unknown = client.post("/api/shipments/999999/retry", headers=bearer())
    assert (unknown.status_code, unknown.get_json()) == (404, {"error": "no rental 999999"})
    assert client.post(f"/api/shipments/{rid}/retry").status_code == 401
