"""Building schedules from TOML text in tests."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path

from cronwork.loader import parse_schedule
from cronwork.spec import Schedule


def schedule_from(text: str, now: datetime) -> Schedule:
    """Validate TOML text as if it were schedule.toml (`now` is unused: parsing is pure; kept
    so tests still say when they parse)."""
    return parse_schedule(tomllib.loads(text), Path("schedule.toml"))
