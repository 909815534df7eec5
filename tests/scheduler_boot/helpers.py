"""Building schedules from TOML text in tests."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path

from cronwork.spec import Schedule, parse_schedule


def schedule_from(text: str, now: datetime) -> Schedule:
    """Validate TOML text as if it were schedule.toml."""
    return parse_schedule(tomllib.loads(text), Path("schedule.toml"), now)
