"""Demo tasks, one per scenario the task jobs act on (warnings, periodic resets, cleanup)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from app.demo.rows import Row, ago
from app.models import TaskStatus

# fmt: off
# Scenario weights: each scenario gives at least one row (when N allows), the rest are drawn.
TASK_SCENARIOS = {
    "new": 15, "warn_95": 4, "warn_90": 4, "warn_80": 6, "on_track": 25, "overdue": 4,
    "periodic_due_completed": 6, "periodic_due_closed": 3, "periodic_recent": 6,
    "completed": 12, "closed_recent": 8, "closed_old": 7,
}
# Share of the expected window already elapsed, per processing scenario: warnings fire at
# 80/90/95 % of the time used while the progress (drawn at 5-60 %) lags behind.
TIME_FRACTIONS = {
    "warn_95": (0.955, 0.995), "warn_90": (0.905, 0.945), "warn_80": (0.805, 0.895),
    "on_track": (0.05, 0.75), "overdue": (1.05, 1.6),
}
# fmt: on
VERBS = ["Review", "Update", "Inspect", "Calibrate", "Audit", "Prepare", "Clean", "Order"]
OBJECTS = ["invoices", "sensors", "inventory", "contracts", "HVAC filters", "backups", "labels"]


def task_row(rng: random.Random, now: datetime, kind: str, i: int, user_ids: list[int]) -> Row:
    """One task in the state `kind` describes (see TASK_SCENARIOS)."""
    day, hour = timedelta(days=1), timedelta(hours=1)
    duration = timedelta(hours=rng.randint(24, 30 * 24))
    row: Row = {
        "title": f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} #{i + 1}",
        "handler_id": rng.choice(user_ids),
        "status": TaskStatus.NEW,
        "is_periodic": False,
        "period_days": 7,
        "progress": 0,
        "time_progress": 0.0,
        "actual_start": None,
        "actual_end": None,
        "completed_at": None,
        "closed_at": None,
    }
    if kind == "new":
        start = now + timedelta(hours=rng.randint(1, 240))
        created = ago(now, rng, hour, 5 * day)
        row.update(expected_start=start, expected_end=start + duration, created_at=created)
    elif kind in TIME_FRACTIONS:
        fraction = rng.uniform(*TIME_FRACTIONS[kind])
        start = now - duration * fraction
        on_time = kind in ("on_track", "overdue")
        progress = fraction * 100 + rng.uniform(-10, 10) if on_time else rng.uniform(5, 60)
        row.update(
            status=TaskStatus.PROCESSING,
            expected_start=start,
            expected_end=start + duration,
            actual_start=start,
            progress=max(0, min(99, round(progress))),
            time_progress=round(min(fraction, 1.0) * 100, 2),
            created_at=start - 2 * day,
        )
    else:
        periodic = kind.startswith("periodic")
        period = rng.choice([1, 7, 7, 14, 30]) if periodic else 7
        if kind.startswith("periodic_due"):  # finished at least one period ago: reset is due
            finished = ago(now, rng, timedelta(days=period) + hour, timedelta(days=period + 3))
        elif kind == "periodic_recent":
            finished = ago(now, rng, hour, timedelta(days=period) * 0.8)
        elif kind == "closed_old":  # beyond the 90-day retention of cleanup_old_data
            finished = ago(now, rng, 91 * day, 400 * day)
        else:
            finished = ago(now, rng, hour, 60 * day)
        closed = "closed" in kind
        completed_at = finished - timedelta(hours=rng.randint(1, 48)) if closed else finished
        row.update(
            status=TaskStatus.CLOSED if closed else TaskStatus.COMPLETED,
            is_periodic=periodic,
            period_days=period,
            progress=100,
            time_progress=100.0,
            expected_start=completed_at - duration,
            expected_end=completed_at,
            actual_start=completed_at - duration,
            actual_end=completed_at,
            completed_at=completed_at,
            closed_at=finished if closed else None,
            created_at=completed_at - duration - day,
        )
    row["updated_at"] = max(
        t
        for t in (row["created_at"], row["actual_start"], row["completed_at"], row["closed_at"])
        if t is not None
    )
    return row
