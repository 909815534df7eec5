"""update_stage_status: transitions at the boundaries, set-based, one commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import insert, select

from app.extensions import db
from app.models import Stage, StageStatus
from app.services.stages import update_stage_status

NOW = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
SECOND, DAY = timedelta(seconds=1), timedelta(days=1)
CREATED = NOW - 10 * DAY


def add_stage(status: StageStatus, start: datetime, end: datetime) -> int:
    """A committed stage; returns its id."""
    stage = Stage(name="s", status=status, start_date=start, end_date=end, updated_at=CREATED)
    db.session.add(stage)
    db.session.commit()
    return stage.id


def status_of(stage_id: int) -> StageStatus:
    return db.session.scalars(select(Stage.status).where(Stage.id == stage_id)).one()


def test_start_date_equal_to_now_activates(app: Flask) -> None:
    stage = add_stage(StageStatus.PENDING, NOW, NOW + DAY)
    assert update_stage_status(NOW) == {"activated": 1, "completed": 0}
    assert status_of(stage) is StageStatus.ACTIVE


def test_start_date_one_second_ahead_stays_pending(app: Flask) -> None:
    stage = add_stage(StageStatus.PENDING, NOW + SECOND, NOW + DAY)
    assert update_stage_status(NOW) == {"activated": 0, "completed": 0}
    assert status_of(stage) is StageStatus.PENDING


def test_end_date_equal_to_now_completes(app: Flask) -> None:
    stage = add_stage(StageStatus.ACTIVE, NOW - DAY, NOW)
    assert update_stage_status(NOW) == {"activated": 0, "completed": 1}
    assert status_of(stage) is StageStatus.COMPLETED


def test_end_date_one_second_ahead_stays_active(app: Flask) -> None:
    stage = add_stage(StageStatus.ACTIVE, NOW - DAY, NOW + SECOND)
    assert update_stage_status(NOW) == {"activated": 0, "completed": 0}
    assert status_of(stage) is StageStatus.ACTIVE


def test_pending_stage_entirely_in_the_past_goes_straight_to_completed(app: Flask) -> None:
    stage = add_stage(StageStatus.PENDING, NOW - 2 * DAY, NOW - DAY)
    assert update_stage_status(NOW) == {"activated": 0, "completed": 1}
    assert status_of(stage) is StageStatus.COMPLETED


def test_pending_stage_ending_exactly_now_completes(app: Flask) -> None:
    stage = add_stage(StageStatus.PENDING, NOW - DAY, NOW)
    assert update_stage_status(NOW) == {"activated": 0, "completed": 1}
    assert status_of(stage) is StageStatus.COMPLETED


def test_completed_stages_are_left_alone(app: Flask) -> None:
    stage = add_stage(StageStatus.COMPLETED, NOW - 2 * DAY, NOW - DAY)
    assert update_stage_status(NOW) == {"activated": 0, "completed": 0}
    assert db.session.get(Stage, stage).updated_at == CREATED


def test_updated_at_is_set_on_changed_rows_only(app: Flask) -> None:
    moved = add_stage(StageStatus.PENDING, NOW - SECOND, NOW + DAY)
    kept = add_stage(StageStatus.PENDING, NOW + DAY, NOW + 2 * DAY)
    update_stage_status(NOW)
    assert db.session.get(Stage, moved).updated_at == NOW
    assert db.session.get(Stage, kept).updated_at == CREATED


def test_second_run_with_the_same_now_changes_nothing(app: Flask) -> None:
    add_stage(StageStatus.PENDING, NOW - SECOND, NOW + DAY)
    add_stage(StageStatus.ACTIVE, NOW - DAY, NOW - SECOND)
    assert update_stage_status(NOW) == {"activated": 1, "completed": 1}
    assert update_stage_status(NOW) == {"activated": 0, "completed": 0}


def test_any_aware_zone_means_the_same_instant(app: Flask) -> None:
    stage = add_stage(StageStatus.PENDING, NOW, NOW + DAY)
    shanghai_now = NOW.astimezone(ZoneInfo("Asia/Shanghai"))  # 17:00 local
    assert update_stage_status(shanghai_now - SECOND) == {"activated": 0, "completed": 0}
    assert update_stage_status(shanghai_now) == {"activated": 1, "completed": 0}
    assert status_of(stage) is StageStatus.ACTIVE


def test_naive_now_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="naive"):
        update_stage_status(datetime(2026, 1, 5, 9, 0))  # noqa: DTZ001


def seed_due_stages(per_kind: int) -> None:
    """`per_kind` stages of each kind that changes: due to start, due to end, missed."""
    rows = [
        {"name": f"{kind} {i}", "status": status, "start_date": start, "end_date": end,
         "updated_at": CREATED}
        for i in range(per_kind)
        for kind, status, start, end in (
            ("start", StageStatus.PENDING, NOW - SECOND, NOW + DAY),
            ("end", StageStatus.ACTIVE, NOW - DAY, NOW - SECOND),
            ("missed", StageStatus.PENDING, NOW - 2 * DAY, NOW - DAY),
        )
    ]  # fmt: skip
    db.session.execute(insert(Stage), rows)
    db.session.commit()


@pytest.mark.parametrize("per_kind", [1, 500])
def test_set_based_whatever_the_row_count(app: Flask, statements: list[str], per_kind: int) -> None:
    seed_due_stages(per_kind)
    statements.clear()

    assert update_stage_status(NOW) == {"activated": per_kind, "completed": 2 * per_kind}

    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 2
    assert 2 <= len(statements) <= 3, statements  # the UPDATEs, maybe a transaction statement
    counts = {
        status: len(db.session.scalars(select(Stage.id).where(Stage.status == status)).all())
        for status in StageStatus
    }
    assert counts == {
        StageStatus.PENDING: 0,
        StageStatus.ACTIVE: per_kind,
        StageStatus.COMPLETED: 2 * per_kind,
    }
