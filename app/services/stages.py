"""Stage life cycle (seed 001): pending → active at start_date → completed at end_date.

The seed looped over every stage with one commit each; here the whole transition is two
set-based UPDATE statements and one commit, whatever the number of stages:

1. every pending or active stage whose `end_date <= now` becomes completed — this includes
   a pending stage whose whole window is already past (the scheduler was down, or the stage
   was created late): it goes straight to completed instead of becoming active for a minute;
2. every remaining pending stage whose `start_date <= now` becomes active.

Both bounds are inclusive: a stage starts at its `start_date` and ends at its `end_date`.
Running it twice with the same `now` changes nothing the second time.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, update

from app.extensions import db
from app.models import Stage, StageStatus

logger = logging.getLogger(__name__)


def update_stage_status(now: datetime) -> dict[str, int]:
    """Move stages along their life cycle as of `now`; return {"activated": n, "completed": n}.

    Raises:
        ValueError: `now` is naive (every datetime crossing a boundary must be aware).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass an aware datetime")

    # Completion first, so a pending stage already past its end is not activated too.
    # synchronize_session=False: nothing is loaded in this session that needs refreshing,
    # and the commit below expires every loaded object anyway; "auto" could add a SELECT.
    completed = db.session.execute(
        update(Stage)
        .where(
            Stage.status.in_([StageStatus.PENDING, StageStatus.ACTIVE]),
            Stage.end_date <= now,
        )
        .values(status=StageStatus.COMPLETED, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    activated = db.session.execute(
        update(Stage)
        .where(Stage.status == StageStatus.PENDING, Stage.start_date <= now)
        .values(status=StageStatus.ACTIVE, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()

    summary = {
        "activated": cast(CursorResult[Any], activated).rowcount,
        "completed": cast(CursorResult[Any], completed).rowcount,
    }
    logger.info(
        "stage status updated activated=%d completed=%d now=%s",
        summary["activated"],
        summary["completed"],
        now.isoformat(),
    )
    return summary
