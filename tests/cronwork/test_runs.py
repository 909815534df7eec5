"""The run lifecycle on a real Redis: named transitions, replaced outcomes, fenced attempts."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from cronwork.keys import Keys
from cronwork.ledger import Ledger
from cronwork.runs import WAITER_TTL, Guard, RunState, RunWriter, StartKind, Trigger, WaitKind, error_fields
from tests.conftest import wait_until

KEYS = Keys()
T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
TICK = int(T0.timestamp())


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


@pytest.fixture
def runs(redis: Redis) -> RunWriter:
    return RunWriter(redis, KEYS)


def record(redis: Redis, tick: int = TICK) -> dict[str, object]:
    return next(r for r in Ledger(redis, KEYS).history("nightly") if r["tick"] == tick)


def enqueue(redis: Redis, runs: RunWriter, tick: int = TICK) -> None:
    with redis.pipeline(transaction=True) as pipe:
        runs.enqueued(pipe, "nightly", tick, f"cronwork-nightly-{tick}", Trigger.SCHEDULE, T0, 0.01)
        pipe.execute()


def start(
    runs: RunWriter, token: str, worker: str = "w1", tick: int = TICK, ttl: int = 60
) -> tuple[bool, object]:
    return runs.started("nightly", tick, token, f"cronwork-nightly-{tick}", worker, T0, T0, ttl)


def finish(runs: RunWriter, state: RunState, token: str, tick: int = TICK, **fields: object) -> bool:
    ended = {"ended_at": (T0 + timedelta(seconds=5)).isoformat(), "duration": 5.0, **fields}
    return runs.finished(
        "nightly", tick, state, Guard.TOKEN, token, ended, {"started_at": T0.isoformat()}
    ).current


def test_states_know_whether_they_are_final_and_failures() -> None:
    assert {s for s in RunState if s.is_failure} == {RunState.FAILED, RunState.TIMED_OUT, RunState.ABANDONED}
    assert not RunState.RETRYING.is_final and not RunState.RUNNING.is_final
    assert RunState.SUCCEEDED.is_final and RunState.MISSED.is_final and not RunState.SUCCEEDED.is_failure


def test_fail_retry_succeed_leaves_no_stale_error(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    assert start(runs, "a") == (StartKind.STARTED, 1)
    assert finish(runs, RunState.RETRYING, "a", error_type="RuntimeError", error="boom")
    assert start(runs, "b") == (StartKind.STARTED, 2)
    assert finish(runs, RunState.SUCCEEDED, "b", result='{"ok": true}')
    rec = record(redis)
    assert rec["state"] == "succeeded" and rec["attempt"] == 2 and rec["result"] == {"ok": True}
    assert "error" not in rec and "error_type" not in rec
    assert rec["lag"] == 0.01 and rec["trigger"] == "schedule"  # the enqueue is kept
    attempts = Ledger(redis, KEYS).attempts("nightly", TICK)
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "retrying"), (2, "succeeded")]


def test_a_stale_attempt_can_neither_overwrite_nor_release_the_newer_one(
    redis: Redis, runs: RunWriter
) -> None:
    enqueue(redis, runs)
    start(runs, "old", worker="w1")
    # w1's parent died; another worker's maintenance finds the run abandoned and retries it.
    abandoned = runs.finished(
        "nightly", TICK, RunState.RETRYING, Guard.OWNER, "w1", {"error": "abandoned"}, {}
    )
    assert abandoned.current and redis.get(KEYS.overlap_lock("nightly")) is None  # the dead one's lock
    assert start(runs, "new", worker="w2") == (StartKind.STARTED, 2)
    # The orphaned first attempt ends now: nothing it writes lands, the lock stays the retry's.
    assert not finish(runs, RunState.SUCCEEDED, "old")
    assert not runs.finished("nightly", TICK, RunState.FAILED, Guard.OWNER, "w1", {}).current
    rec = record(redis)
    assert rec["state"] == "running" and rec["token"] == "new" and rec["worker"] == "w2"
    assert redis.get(KEYS.overlap_lock("nightly")) == b"new"
    assert finish(runs, RunState.SUCCEEDED, "new") and redis.get(KEYS.overlap_lock("nightly")) is None


def test_overlap_lock_held_by_another_run_is_reported(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    enqueue(redis, runs, TICK + 60)
    assert start(runs, "first") == (StartKind.STARTED, 1)
    assert start(runs, "second", tick=TICK + 60) == (StartKind.HELD, "first")
    assert runs.finished("nightly", TICK + 60, RunState.SKIPPED_OVERLAP, Guard.TOKEN, "second", {}).current
    assert redis.get(KEYS.overlap_lock("nightly")) == b"first"  # the skipped one releases nothing


def test_a_requeued_tick_counts_once_in_the_streak_and_numbers_its_attempts(
    redis: Redis, runs: RunWriter
) -> None:
    enqueue(redis, runs)
    start(runs, "a")
    finish(runs, RunState.FAILED, "a", error="first")
    assert redis.get(KEYS.failure_streak("nightly")) == b"1"
    # Requeued by a tool that writes no record (`rq requeue`, rq-dashboard): noticed at start.
    assert start(runs, "b") == (StartKind.STARTED, 2)
    assert record(redis)["requeued_at"] == T0.isoformat() and "error" not in record(redis)
    finish(runs, RunState.FAILED, "b", error="again")
    assert redis.get(KEYS.failure_streak("nightly")) == b"1"
    enqueue(redis, runs, TICK + 60)
    start(runs, "c", tick=TICK + 60)
    finish(runs, RunState.TIMED_OUT, "c", tick=TICK + 60)
    assert redis.get(KEYS.failure_streak("nightly")) == b"2"
    enqueue(redis, runs, TICK + 120)
    start(runs, "d", tick=TICK + 120)
    finish(runs, RunState.SUCCEEDED, "d", tick=TICK + 120)
    assert redis.get(KEYS.failure_streak("nightly")) is None


def test_enqueued_replaces_whatever_the_tick_held(redis: Redis, runs: RunWriter) -> None:
    Ledger(redis, KEYS).put("nightly", TICK, {"state": "failed", "error": "stale", "attempt": 3})
    enqueue(redis, runs)
    rec = record(redis)
    assert rec["state"] == "enqueued" and "error" not in rec and "attempt" not in rec


def test_requeued_clears_the_outcome_and_keeps_the_enqueue(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    start(runs, "a")
    finish(runs, RunState.FAILED, "a", error="boom")
    with redis.pipeline(transaction=True) as pipe:
        runs.requeued(pipe, "nightly", TICK, T0 + timedelta(hours=1))
        pipe.execute()
    rec = record(redis)
    assert rec["state"] == "enqueued" and "error" not in rec and rec["lag"] == 0.01
    assert rec["requeued_at"] == (T0 + timedelta(hours=1)).isoformat()


def test_database_errors_keep_the_drivers_message() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(OperationalError) as caught, engine.connect() as conn:
        conn.execute(text("SELECT * FROM missing_table"))
    fields = error_fields("".join(traceback.format_exception(caught.value)))
    assert fields == {
        "error_type": "OperationalError",
        "error": "(sqlite3.OperationalError) no such table: missing_table",
    }


def test_error_fields_of_plain_and_chained_errors() -> None:
    assert error_fields("AbandonedJobError: worker died mid-job") == {
        "error_type": "AbandonedJobError",
        "error": "worker died mid-job",
    }
    try:
        try:
            raise ValueError("inner")
        except ValueError as exc:
            raise RuntimeError("outer") from exc
    except RuntimeError as exc:
        chained = "".join(traceback.format_exception(exc))
    assert error_fields(chained) == {"error_type": "RuntimeError", "error": "outer"}


def test_a_run_that_ended_well_is_never_overwritten_nor_started_again(redis: Redis, runs: RunWriter) -> None:
    # The horse recorded its success and was killed before rq committed the job's status: rq
    # then reports the run abandoned (or its parent reports the horse's death).
    enqueue(redis, runs)
    start(runs, "a", worker="w1")
    assert finish(runs, RunState.SUCCEEDED, "a")
    for guard, value in ((Guard.OWNER, "w1"), (Guard.OPEN, "")):
        refused = runs.finished("nightly", TICK, RunState.RETRYING, guard, value, {"error": "died"}, {})
        assert not refused.current and refused.ended_as is RunState.SUCCEEDED and refused.ended_well
    assert start(runs, "retry", worker="w2") == (StartKind.DONE, "succeeded")  # never run again
    rec = record(redis)
    assert rec["state"] == "succeeded" and rec["token"] == "a" and rec["attempt"] == 1
    assert redis.get(KEYS.overlap_lock("nightly")) is None


def test_a_run_that_ended_failed_is_not_overwritten_by_its_dead_horse(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    start(runs, "a", worker="w1")
    finish(runs, RunState.FAILED, "a", error="boom")
    refused = runs.finished("nightly", TICK, RunState.FAILED, Guard.OWNER, "w1", {"error": "horse died"}, {})
    assert not refused.current and refused.ended_as is RunState.FAILED and not refused.ended_well
    assert record(redis)["error"] == "boom"
    assert redis.get(KEYS.failure_streak("nightly")) == b"1"


# -- the policies that wait (buffer_one, cancel_other) ----------------------------------------


def start_waiting(
    runs: RunWriter, token: str, tick: int, ttl: int = 60, waiter_ttl: int = WAITER_TTL
) -> tuple[StartKind, object]:
    """A start under buffer_one / cancel_other: the run may take the waiting place."""
    return runs.started("nightly", tick, token, f"cronwork-nightly-{tick}", "w", T0, T0, ttl, waiter_ttl)


def test_one_run_waits_for_the_lock_and_a_further_one_is_skipped(redis: Redis, runs: RunWriter) -> None:
    first, second, third = TICK, TICK + 60, TICK + 120
    for tick in (first, second, third):
        enqueue(redis, runs, tick)
    assert start_waiting(runs, f"cronwork-nightly-{first}/a", first) == (StartKind.STARTED, 1)
    holder = f"cronwork-nightly-{first}/a"
    assert start_waiting(runs, f"cronwork-nightly-{second}/b", second) == (StartKind.BUFFERED, holder)
    waiting = record(redis, second)
    assert waiting["state"] == "buffered" and waiting["waiting_for"] == f"cronwork-nightly-{first}"
    assert "started_at" not in waiting and waiting["buffered_at"] == T0.isoformat()
    # One run waits already: the third is skipped, naming the run holding the lock.
    assert start_waiting(runs, f"cronwork-nightly-{third}/c", third) == (StartKind.HELD, holder)

    later = T0 + timedelta(seconds=30)
    assert runs.waited("nightly", second, f"cronwork-nightly-{second}/b", later, 60) == (
        WaitKind.WAITING,
        holder,
    )
    assert finish(runs, RunState.SUCCEEDED, holder, tick=first)
    # Between the holder's end and the waiter's next look, the lock is promised to the waiter.
    assert start_waiting(runs, f"cronwork-nightly-{TICK + 180}/d", TICK + 180)[0] is StartKind.HELD
    assert runs.waited("nightly", second, f"cronwork-nightly-{second}/b", later, 60) == (
        WaitKind.RUNNING,
        None,
    )
    running = record(redis, second)
    assert running["state"] == "running" and running["started_at"] == later.isoformat()
    assert redis.get(KEYS.overlap_lock("nightly")) == f"cronwork-nightly-{second}/b".encode()
    assert redis.get(KEYS.overlap_waiter("nightly")) is None
    assert finish(runs, RunState.SUCCEEDED, f"cronwork-nightly-{second}/b", tick=second)
    assert record(redis, second)["waiting_for"] == f"cronwork-nightly-{first}"  # kept: the run's story
    assert redis.get(KEYS.overlap_lock("nightly")) is None


def test_a_dead_holders_lock_expires_and_the_waiter_takes_it(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    enqueue(redis, runs, TICK + 60)
    start_waiting(runs, "dead/a", TICK, ttl=1)  # its worker dies: nobody releases the lock
    assert start_waiting(runs, "waiter/b", TICK + 60)[0] is StartKind.BUFFERED
    wait_until(
        lambda: runs.waited("nightly", TICK + 60, "waiter/b", T0, 60)[0] is WaitKind.RUNNING, timeout=5
    )
    assert redis.get(KEYS.overlap_lock("nightly")) == b"waiter/b"


def test_a_dead_waiter_frees_its_place_and_is_then_passed_over(redis: Redis, runs: RunWriter) -> None:
    for tick in (TICK, TICK + 60, TICK + 120):
        enqueue(redis, runs, tick)
    start_waiting(runs, "holder/a", TICK)
    assert start_waiting(runs, "stalled/b", TICK + 60, waiter_ttl=1)[0] is StartKind.BUFFERED
    # It stops looking (dead or stalled): its place lapses and the next run takes it.
    wait_until(lambda: redis.get(KEYS.overlap_waiter("nightly")) is None, timeout=5)
    assert start_waiting(runs, "next/c", TICK + 120) == (StartKind.BUFFERED, "holder/a")
    assert runs.waited("nightly", TICK + 60, "stalled/b", T0, 60) == (WaitKind.PASSED_OVER, "next/c")
    # A dead waiter's worker (or abandon detection) ends its run; the new waiter keeps its place.
    assert runs.finished("nightly", TICK + 60, RunState.ABANDONED, Guard.OPEN, "", {}, {}).current
    assert redis.get(KEYS.overlap_waiter("nightly")) == b"next/c"
    assert runs.waited("nightly", TICK + 60, "stalled/b", T0, 60)[0] is WaitKind.STALE


def test_a_waiter_that_ends_frees_its_place(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    enqueue(redis, runs, TICK + 60)
    start_waiting(runs, "holder/a", TICK)
    start_waiting(runs, "gives-up/b", TICK + 60)
    assert finish(runs, RunState.SKIPPED_OVERLAP, "gives-up/b", tick=TICK + 60)
    assert redis.get(KEYS.overlap_waiter("nightly")) is None
    assert redis.get(KEYS.overlap_lock("nightly")) == b"holder/a"


def test_cancel_is_requested_only_of_the_attempt_still_running(redis: Redis, runs: RunWriter) -> None:
    enqueue(redis, runs)
    start_waiting(runs, f"cronwork-nightly-{TICK}/a", TICK)
    assert runs.cancel_requested_by("nightly", TICK) is None
    at = T0 + timedelta(seconds=3)
    assert not runs.cancel_requested("nightly", f"cronwork-nightly-{TICK}/older", "cronwork-nightly-9", at)
    assert runs.cancel_requested("nightly", f"cronwork-nightly-{TICK}/a", "cronwork-nightly-9", at)
    assert runs.cancel_requested_by("nightly", TICK) == "cronwork-nightly-9"
    assert record(redis)["cancel_requested_at"] == at.isoformat()
    # The stopped attempt's worker records it: final, not a failure, the lock released.
    ended = runs.finished("nightly", TICK, RunState.CANCELLED, Guard.OWNER, "w", {"result": "{}"}, {})
    assert ended.current and ended.streak == 0 and redis.get(KEYS.failure_streak("nightly")) is None
    assert redis.get(KEYS.overlap_lock("nightly")) is None
    assert not runs.cancel_requested("nightly", f"cronwork-nightly-{TICK}/a", "cronwork-nightly-9", at)
    # A new attempt of the run (an operator's requeue) starts without the old request.
    assert start(runs, f"cronwork-nightly-{TICK}/b")[0] is StartKind.STARTED
    assert runs.cancel_requested_by("nightly", TICK) is None and "requeued_at" in record(redis)
