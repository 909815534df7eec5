"""The HTTP carrier and marketplace against a real local HTTP server started by the test."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from app.extensions import db
from app.models import Rental, RentalStatus, now_utc
from app.services.carriers import (
    CarrierError,
    HttpCarrier,
    HttpService,
    LocalCarrier,
    LocalMarketplace,
    carrier_from_config,
    marketplace_from_config,
)
from app.services.shipments import process_scheduled_shipments

TOKEN = "s3cret-token"


@dataclass
class FakeServices:
    """What the fake carrier/marketplace answer, and every request they received."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    delay: float = 0.0


@pytest.fixture
def services() -> Iterator[FakeServices]:
    fake = FakeServices(
        answers={
            "/carrier/bookings": (201, b'{"tracking_number": "HT-1"}'),
            "/market/shipments": (204, b""),
        }
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "key": self.headers.get("Idempotency-Key"),
                    "json": json.loads(body),
                }
            )
            time.sleep(fake.delay)
            status, answer = fake.answers.get(self.path, (404, b"no such endpoint"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def configure(app: Flask, services: FakeServices, timeout: float = 2.0) -> None:
    app.config.update(
        CARRIER_URL=f"{services.url}/carrier/",
        CARRIER_TOKEN=TOKEN,
        CARRIER_TIMEOUT=str(timeout),
        MARKETPLACE_URL=f"{services.url}/market",
        MARKETPLACE_TOKEN=TOKEN,
        MARKETPLACE_TIMEOUT=str(timeout),
    )


def ship_one(app: Flask) -> tuple[dict[str, int], Rental]:
    now = now_utc()
    rental = Rental(item_name="Drone", customer="Tom Becker", ship_at=now - timedelta(minutes=1))
    db.session.add(rental)
    db.session.commit()
    summary = process_scheduled_shipments(
        now, carrier_from_config(app.config), marketplace_from_config(app.config), worker="w"
    )
    db.session.expire_all()
    return summary, db.session.get(Rental, rental.id)


def test_ships_through_the_http_services(app: Flask, services: FakeServices) -> None:
    configure(app, services)
    summary, rental = ship_one(app)
    assert summary == {"total": 1, "success": 1, "failed": 0, "retrying": 0, "retried": 0, "skipped": 0}
    assert (rental.status, rental.tracking_number) == (RentalStatus.SHIPPED, "HT-1")
    booking, notice = services.requests
    assert booking == {
        "path": "/carrier/bookings",
        "auth": f"Bearer {TOKEN}",
        "key": f"rental-{rental.id}-booking",
        "json": {"rental_id": rental.id, "item": "Drone", "customer": "Tom Becker"},
    }
    assert notice["path"] == "/market/shipments"
    assert notice["json"] == {"rental_id": rental.id, "tracking_number": "HT-1"}


def test_carrier_http_error_fails_the_rental_with_a_clear_message(app: Flask, services: FakeServices) -> None:
    configure(app, services)
    services.answers["/carrier/bookings"] = (422, b"no such address")
    summary, rental = ship_one(app)
    assert summary["failed"] == 1
    assert rental.status is RentalStatus.FAILED
    assert rental.last_error == f"CarrierError: carrier POST {services.url}/carrier/bookings: HTTP 422 no such address"
    assert TOKEN not in rental.last_error


def test_a_carrier_503_is_retried_on_a_later_run_and_ships(app: Flask, services: FakeServices) -> None:
    configure(app, services)
    services.answers["/carrier/bookings"] = (503, b"maintenance until 10:00")
    summary, rental = ship_one(app)
    assert (summary["retrying"], summary["failed"]) == (1, 0)
    assert rental.status is RentalStatus.PENDING and rental.retry_at is not None
    assert rental.last_error == (
        f"CarrierError: carrier POST {services.url}/carrier/bookings: HTTP 503 maintenance until 10:00"
    )
    services.answers["/carrier/bookings"] = (200, b'{"tracking_number": "HT-1"}')
    again = process_scheduled_shipments(
        rental.retry_at, carrier_from_config(app.config), marketplace_from_config(app.config), worker="w"
    )
    assert (again["success"], again["retried"]) == (1, 1)
    db.session.expire_all()
    assert db.session.get(Rental, rental.id).status is RentalStatus.SHIPPED
    assert [r["path"] for r in services.requests] == ["/carrier/bookings", "/carrier/bookings", "/market/shipments"]


def test_marketplace_down_keeps_the_booking_for_next_time(app: Flask, services: FakeServices) -> None:
    configure(app, services)
    services.answers["/market/shipments"] = (500, b"")
    summary, rental = ship_one(app)
    assert summary["retrying"] == 1
    assert (rental.status, rental.tracking_number) == (RentalStatus.PENDING, "HT-1")
    services.answers["/market/shipments"] = (200, b"{}")
    again = process_scheduled_shipments(
        rental.retry_at, carrier_from_config(app.config), marketplace_from_config(app.config), worker="w"
    )
    assert again["success"] == 1
    assert [r["path"] for r in services.requests] == [
        "/carrier/bookings",
        "/market/shipments",
        "/market/shipments",
    ]


def test_slow_carrier_times_out(services: FakeServices) -> None:
    services.delay = 0.5
    carrier = HttpCarrier(HttpService("carrier", f"{services.url}/carrier", TOKEN, timeout=0.1))
    with pytest.raises(CarrierError, match=r"carrier POST .*/carrier/bookings: .*timed out"):
        carrier.book(Rental(id=7, item_name="x", customer="y"))


def test_unreachable_carrier(app: Flask) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    carrier = HttpCarrier(HttpService("carrier", f"http://127.0.0.1:{port}", TOKEN, timeout=1))
    with pytest.raises(CarrierError, match=f"carrier POST http://127.0.0.1:{port}/bookings: .*refused"):
        carrier.book(Rental(id=7, item_name="x", customer="y"))


@pytest.mark.parametrize("answer", [b"{}", b'{"tracking_number": ""}', b"<html>oops</html>"])
def test_carrier_answer_without_tracking_number(services: FakeServices, answer: bytes) -> None:
    services.answers["/carrier/bookings"] = (200, answer)
    carrier = HttpCarrier(HttpService("carrier", f"{services.url}/carrier", TOKEN))
    with pytest.raises(CarrierError, match="tracking_number|not JSON"):
        carrier.book(Rental(id=7, item_name="x", customer="y"))


def test_local_implementations_unless_a_url_is_configured(app: Flask) -> None:
    assert isinstance(carrier_from_config({}), LocalCarrier)
    assert isinstance(marketplace_from_config({"MARKETPLACE_URL": ""}), LocalMarketplace)
    with pytest.raises(ValueError, match="CARRIER_URL='ftp://x': expected an http"):
        carrier_from_config({"CARRIER_URL": "ftp://x"})
