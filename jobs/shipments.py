"""Shipment jobs (seed 000)."""

from __future__ import annotations

import logging

from flask import current_app

from app.models import now_utc
from app.services import shipments
from app.services.carriers import carrier_from_config, marketplace_from_config
from app.services.jobcontext import claimant, current_job_id
from app.services.timewindows import resolve_tick

logger = logging.getLogger(__name__)


def process_scheduled_shipments(scheduled_for: str | None = None) -> dict[str, int]:
    """Ship every due rental once: claim, book the carrier, notify the marketplace.

    Uses the clock (everything due by now ships, however late the run); returns
    {total, success, failed, retrying, retried, skipped} (app.services.shipments).
    """
    tick = resolve_tick(scheduled_for)
    summary = shipments.process_scheduled_shipments(
        now_utc(),
        carrier_from_config(current_app.config),
        marketplace_from_config(current_app.config),
        worker=claimant(),
        max_attempts=int(current_app.config["SHIPMENT_MAX_ATTEMPTS"]),
    )
    logger.info(
        "job done job=process_scheduled_shipments job_id=%s tick=%s %s",
        current_job_id(),
        tick.isoformat(),
        " ".join(f"{key}={value}" for key, value in summary.items()),
    )
    return summary
