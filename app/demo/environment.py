"""Demo rooms, their setpoints and sensor readings (a few out of range, one alert due)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from app.demo.rows import Row
from app.models import Metric

READING_HOURS = 26  # a full previous day for daily_env_stats, whatever the time of the run
EXCURSION_RATE = 0.03  # share of readings outside their setpoint
# fmt: off
# (min, max) per metric; CO2 has no lower bound (NULL), as real setpoints often do.
SETPOINTS = {
    Metric.TEMPERATURE: (18.0, 26.0), Metric.HUMIDITY: (45.0, 65.0), Metric.CO2: (None, 1200.0),
}
# fmt: on
TYPICAL = {Metric.TEMPERATURE: (22.0, 1.2), Metric.HUMIDITY: (55.0, 3.0), Metric.CO2: (800.0, 90.0)}
ROOMS = ["Grow Room A", "Grow Room B", "Nursery", "Drying Room", "Seed Bank", "Lab"]


def room_rows(n: int) -> list[Row]:
    """`n` rooms: the named ones first, then numbered ones."""
    return [{"name": ROOMS[i] if i < len(ROOMS) else f"Room {i + 1:03d}"} for i in range(n)]


def setpoint_rows(room_ids: list[int]) -> Iterator[Row]:
    """The same SETPOINTS for every room."""
    for room_id in room_ids:
        for metric, (low, high) in SETPOINTS.items():
            yield {"room_id": room_id, "metric": metric, "min_value": low, "max_value": high}


def reading_rows(
    rng: random.Random, now: datetime, room_ids: list[int], per_hour: int
) -> Iterator[Row]:
    """Readings over the last READING_HOURS, a few outside setpoints, one in the last hour."""
    step = timedelta(seconds=3600 / per_hour)
    count = READING_HOURS * per_hour
    for n_room, room_id in enumerate(room_ids):
        for metric, (mean, sd) in TYPICAL.items():
            high = SETPOINTS[metric][1] or mean
            for k in range(count):
                value = rng.gauss(mean, sd)
                if rng.random() < EXCURSION_RATE or (n_room == 0 and k == count - 1):
                    value = high + abs(rng.gauss(0, sd)) + sd  # the last one: an alert is due
                yield {
                    "room_id": room_id,
                    "metric": metric,
                    "value": round(value, 2),
                    "recorded_at": now - step * (count - 1 - k),
                }
