"""Demo project stages, some due to start or end at the next update_stage_status run."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from app.demo.rows import Row, ago
from app.models import StageStatus

# fmt: off
STAGE_SCENARIOS = {
    "due_start": 3, "starts_soon": 3, "future": 3, "missed": 1,
    "due_end": 3, "ends_soon": 3, "running": 3, "done": 3,
}
# fmt: on
PHASES = ["Design", "Procurement", "Build", "Testing", "Rollout", "Review", "Handover"]


def stage_row(rng: random.Random, now: datetime, kind: str, i: int) -> Row:
    """One stage; `due_*` and `missed` ones change at the next update_stage_status run."""
    minute, day = timedelta(minutes=1), timedelta(days=1)
    soon = now + timedelta(seconds=rng.randint(60, 15 * 60))
    status = {
        "due_end": StageStatus.ACTIVE,
        "ends_soon": StageStatus.ACTIVE,
        "running": StageStatus.ACTIVE,
        "done": StageStatus.COMPLETED,
    }.get(kind, StageStatus.PENDING)
    if kind == "due_start":
        start, end = ago(now, rng, minute, 30 * minute), now + rng.randint(1, 30) * day
    elif kind == "starts_soon":
        start, end = soon, soon + rng.randint(1, 30) * day
    elif kind == "future":
        start = now + rng.randint(1, 30) * day
        end = start + rng.randint(1, 30) * day
    elif kind == "missed":
        end = ago(now, rng, minute, day)
        start = end - rng.randint(1, 10) * day
    elif kind == "due_end":
        start, end = now - rng.randint(2, 30) * day, ago(now, rng, minute, 30 * minute)
    elif kind == "ends_soon":
        start, end = now - rng.randint(2, 30) * day, soon
    elif kind == "running":
        start, end = now - rng.randint(1, 10) * day, now + rng.randint(1, 30) * day
    else:  # done
        end = ago(now, rng, day, 90 * day)
        start = end - rng.randint(1, 30) * day
    # When it last changed: activation, completion, or creation for a pending stage.
    last_change = {StageStatus.ACTIVE: start, StageStatus.COMPLETED: end}
    updated = min(now, last_change.get(status, ago(now, rng, day, 2 * day)))
    return {
        "name": f"{PHASES[i % len(PHASES)]} phase {i + 1}",
        "status": status,
        "start_date": start,
        "end_date": end,
        "updated_at": updated,
    }
