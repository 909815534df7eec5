"""Stage jobs (seed 001)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.services.stages import update_stage_status as apply_stage_transitions


def update_stage_status() -> dict[str, int]:
    """Move stages pending → active at start_date and active → completed at end_date.

    Uses the clock, not the tick: a transition is a sync with the present, so a late run
    does everything the missed one would have done, and more.
    """
    return apply_stage_transitions(datetime.now(UTC))
