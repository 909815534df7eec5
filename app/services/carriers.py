"""The carrier and the marketplace a shipment talks to: small interfaces, two implementations.

`LocalCarrier`/`LocalMarketplace` (the default) record each call as a `ShipmentEvent` in the
caller's session, with deterministic tracking numbers. `HttpCarrier`/`HttpMarketplace` POST
JSON to a configured base URL with a bearer token and a timeout; every failure becomes a
`CarrierError` naming the service, the URL and the cause (the token is never included).

Config keys (environment variables of the same name): CARRIER_URL, CARRIER_TOKEN,
CARRIER_TIMEOUT, MARKETPLACE_URL, MARKETPLACE_TOKEN, MARKETPLACE_TIMEOUT. An empty URL
selects the local implementation.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.extensions import db
from app.models import Rental, ShipmentEvent, ShipmentEventKind

DEFAULT_TIMEOUT = 10.0  # seconds, connect and read
ERROR_BODY_MAX = 200  # characters of an error response quoted in the message


# HTTP statuses a later call may not get again: the service is down, overloaded or slow.
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class CarrierError(RuntimeError):
    """A carrier or marketplace call failed; the message says which, where and why.

    `transient`: a later call may succeed (a timeout, a refused connection, a 5xx, 408, 425 or
    429), so the shipment is retried; otherwise (a 4xx, an answer without what was asked) it
    needs a person."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Carrier(Protocol):
    def book(self, rental: Rental) -> str:
        """Book the shipment of `rental`; return its tracking number."""
        ...


class Marketplace(Protocol):
    def notify_shipped(self, rental: Rental, tracking_number: str) -> None:
        """Tell the marketplace `rental` has shipped."""
        ...


def local_tracking_number(rental_id: int) -> str:
    """The local carrier's tracking number: a function of the rental alone."""
    return f"LC{rental_id:010d}"


class LocalCarrier:
    """Books by recording a `carrier_booking` event in the caller's session."""

    def book(self, rental: Rental) -> str:
        tracking = local_tracking_number(rental.id)
        db.session.add(
            ShipmentEvent(
                rental_id=rental.id, kind=ShipmentEventKind.CARRIER_BOOKING, tracking_number=tracking
            )
        )
        return tracking


class LocalMarketplace:
    """Records a `marketplace` event in the caller's session."""

    def notify_shipped(self, rental: Rental, tracking_number: str) -> None:
        db.session.add(
            ShipmentEvent(
                rental_id=rental.id,
                kind=ShipmentEventKind.MARKETPLACE_NOTICE,
                tracking_number=tracking_number,
            )
        )


@dataclass(frozen=True)
class HttpService:
    """A JSON-over-HTTP endpoint: base URL, bearer token, timeout."""

    service: str
    base_url: str
    token: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def post(self, path: str, payload: Mapping[str, Any], idempotency_key: str) -> Any:
        """POST `payload` as JSON to base_url + path; return the decoded JSON answer (or None)."""
        url = self.base_url.rstrip("/") + path
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": idempotency_key,
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            url, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:ERROR_BODY_MAX]
            transient = exc.code >= 500 or exc.code in TRANSIENT_STATUSES
            message = f"{self.service} POST {url}: HTTP {exc.code} {detail}".rstrip()
            raise CarrierError(message, transient) from exc
        except urllib.error.URLError as exc:
            raise CarrierError(f"{self.service} POST {url}: {exc.reason}", transient=True) from exc
        except TimeoutError as exc:
            message = f"{self.service} POST {url}: timed out after {self.timeout:g} s"
            raise CarrierError(message, transient=True) from exc
        except OSError as exc:
            raise CarrierError(f"{self.service} POST {url}: {exc}", transient=True) from exc
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise CarrierError(f"{self.service} POST {url}: answer is not JSON: {body[:80]!r}") from exc


class HttpCarrier:
    """`POST {CARRIER_URL}/bookings` → `{"tracking_number": "..."}`."""

    def __init__(self, http: HttpService) -> None:
        self.http = http

    def book(self, rental: Rental) -> str:
        answer = self.http.post(
            "/bookings",
            {"rental_id": rental.id, "item": rental.item_name, "customer": rental.customer},
            idempotency_key=f"rental-{rental.id}-booking",
        )
        tracking = answer.get("tracking_number") if isinstance(answer, dict) else None
        if not isinstance(tracking, str) or not tracking:
            where = f"{self.http.base_url.rstrip('/')}/bookings"
            raise CarrierError(f"carrier POST {where}: no tracking_number in the answer {answer!r}")
        return tracking


class HttpMarketplace:
    """`POST {MARKETPLACE_URL}/shipments` with the rental id and its tracking number."""

    def __init__(self, http: HttpService) -> None:
        self.http = http

    def notify_shipped(self, rental: Rental, tracking_number: str) -> None:
        self.http.post(
            "/shipments",
            {"rental_id": rental.id, "tracking_number": tracking_number},
            idempotency_key=f"rental-{rental.id}-shipped",
        )


def _http_service(config: Mapping[str, Any], service: str) -> HttpService | None:
    head = service.upper()
    url = config.get(f"{head}_URL") or ""
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{head}_URL={url!r}: expected an http:// or https:// URL")
    timeout = float(config.get(f"{head}_TIMEOUT") or DEFAULT_TIMEOUT)
    return HttpService(service, url, config.get(f"{head}_TOKEN") or "", timeout)


def carrier_from_config(config: Mapping[str, Any]) -> Carrier:
    """The HTTP carrier when CARRIER_URL is set, else the local one."""
    http = _http_service(config, "carrier")
    return HttpCarrier(http) if http else LocalCarrier()


def marketplace_from_config(config: Mapping[str, Any]) -> Marketplace:
    """The HTTP marketplace when MARKETPLACE_URL is set, else the local one."""
    http = _http_service(config, "marketplace")
    return HttpMarketplace(http) if http else LocalMarketplace()
