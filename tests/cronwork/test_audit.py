"""cronwork.audit: the one writer and reader of the audit trail (bounded, per schedule, hostile data)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from redis import Redis

from cronwork import audit
from cronwork.audit import Action, AuditEntry, Outcome, Source, UndecodableEntry
from cronwork.keys import Keys

KEYS = Keys("cw-audit")


@pytest.fixture
def conn(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


def entry(n: int = 0, schedule: str | None = "hc", **fields: object) -> AuditEntry:
    base: dict[str, object] = {
        "actor": "alice",
        "source": Source.PAGE,
        "action": Action.PAUSE,
        "detail": f"#{n}",
    }
    return AuditEntry(schedule=schedule, **{**base, **fields})  # type: ignore[arg-type]


def test_an_entry_round_trips_as_json_and_reads_newest_first(conn: Redis) -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    first = entry(1, target="cronwork-hc-1", remote="10.0.0.7", outcome=Outcome.REFUSED, at=at)
    audit.record(conn, KEYS, first)
    audit.record(conn, KEYS, entry(2, source=Source.CLI, action=Action.RESUME, remote=None))
    stored = json.loads(conn.lindex(KEYS.audit, 1))  # type: ignore[arg-type]
    assert stored == {
        "at": "2026-03-01T12:00:00+00:00",
        "actor": "alice",
        "source": "page",
        "action": "pause",
        "schedule": "hc",
        "target": "cronwork-hc-1",
        "detail": "#1",
        "remote": "10.0.0.7",
        "outcome": "refused",
    }
    newest, oldest = audit.recent(conn, KEYS)
    assert oldest == first
    assert isinstance(newest, AuditEntry) and newest.action is Action.RESUME and newest.source is Source.CLI
    assert audit.recent(conn, KEYS, "hc") == [newest, oldest]
    assert audit.recent(conn, KEYS, limit=1) == [newest]


def test_each_schedule_reads_only_its_own_entries_and_a_login_only_the_trail(conn: Redis) -> None:
    audit.record(conn, KEYS, entry(1, "hc"))
    audit.record(conn, KEYS, entry(2, "nightly"))
    audit.record(conn, KEYS, entry(3, None, action=Action.LOGIN))
    assert [e.detail for e in audit.recent(conn, KEYS, "hc")] == ["#1"]  # type: ignore[union-attr]
    assert [e.detail for e in audit.recent(conn, KEYS, "nightly")] == ["#2"]  # type: ignore[union-attr]
    assert [e.detail for e in audit.recent(conn, KEYS)] == ["#3", "#2", "#1"]  # type: ignore[union-attr]
    assert audit.recent(conn, KEYS, "absent") == []
    assert 0 < conn.ttl(KEYS.audit_of("hc")) <= audit.SCHEDULE_TTL  # type: ignore[operator]
    assert conn.ttl(KEYS.audit) == -1  # the trail itself is bounded by length, not time


def test_the_trail_and_each_schedule_are_capped(conn: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "GLOBAL_CAP", 5)
    monkeypatch.setattr(audit, "PER_SCHEDULE_CAP", 3)
    for n in range(8):
        audit.record(conn, KEYS, entry(n, "hc" if n % 2 else "nightly"))
    assert conn.llen(KEYS.audit) == 5 and conn.llen(KEYS.audit_of("hc")) == 3
    assert [e.detail for e in audit.recent(conn, KEYS, limit=100)] == ["#7", "#6", "#5", "#4", "#3"]  # type: ignore[union-attr]
    assert [e.detail for e in audit.recent(conn, KEYS, "hc")] == ["#7", "#5", "#3"]  # type: ignore[union-attr]


def test_long_fields_are_cut_so_an_entry_stays_small(conn: Redis) -> None:
    audit.record(conn, KEYS, entry(0, actor="x" * 5000, detail="y" * 5000))
    [read] = audit.recent(conn, KEYS)
    assert isinstance(read, AuditEntry) and len(read.actor) == 100 and len(read.detail) == 500
    assert len(conn.lindex(KEYS.audit, 0)) < 1000  # type: ignore[arg-type]


GARBAGE = {
    b"\x80\x04\x95pickle": "not JSON",
    b"[1, 2]": "a JSON list, not an object",
    b'{"actor": "a"}': "at is missing or not a string",
    b'{"at": "2026-01-01T00:00:00+00:00", "actor": "a", "source": "page", "action": "rm -rf", "outcome": "ok"}': (
        "'rm -rf' is not a valid Action"
    ),
    b'{"at": "yesterday", "actor": "a", "source": "page", "action": "pause", "outcome": "ok"}': (
        "Invalid isoformat string: 'yesterday'"
    ),
    b'{"at": "2026-01-01T00:00:00+00:00", "actor": 5, "source": "page", "action": "pause", "outcome": "ok"}': (
        "actor is missing or not a string"
    ),
}


def test_garbage_in_the_lists_is_marked_and_the_rest_still_reads(conn: Redis) -> None:
    audit.record(conn, KEYS, entry(1))
    for raw in GARBAGE:
        conn.lpush(KEYS.audit, raw)
    audit.record(conn, KEYS, entry(2))
    read = audit.recent(conn, KEYS)
    assert [e.detail for e in (read[0], read[-1])] == ["#2", "#1"]  # type: ignore[union-attr]
    marked = read[1:-1][::-1]
    assert [m.reason for m in marked] == list(GARBAGE.values())  # type: ignore[union-attr]
    assert all(isinstance(m, UndecodableEntry) and len(m.excerpt) <= audit.EXCERPT for m in marked)
    assert marked[0].to_dict()["undecodable"] is True  # type: ignore[union-attr]


def test_a_key_of_another_type_reads_as_one_marked_entry(conn: Redis) -> None:
    conn.set(KEYS.audit_of("hc"), "not a list")
    [marked] = audit.recent(conn, KEYS, "hc")
    assert isinstance(marked, UndecodableEntry) and marked.reason.startswith("key is not a list")


def test_every_entry_is_one_info_line_saying_who_did_what_from_where(
    conn: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cronwork.audit"):
        audit.record(conn, KEYS, entry(0, actor="bob\nINFO forged", remote="10.1.2.3", target="job-1"))
    [line] = [r for r in caplog.records if r.name == "cronwork.audit"]
    assert line.levelno == logging.INFO
    assert line.getMessage() == (
        "audit actor='bob\\nINFO forged' action=pause schedule='hc' target='job-1' source=page "
        "remote=10.1.2.3 outcome=ok detail='#0'"
    )
