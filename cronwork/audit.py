"""The audit trail: who did what to which schedule or job, when, from where (issue 12).

One owner: entries are written and decoded here only. Each is one JSON object (never pickle)
pushed onto two capped lists in one MULTI: every action (`Keys.audit`, GLOBAL_CAP entries) and
the schedule's own (`Keys.audit_of`, PER_SCHEDULE_CAP entries, expiring SCHEDULE_TTL after its
last write), so a schedule's page reads its entries with one LRANGE. Whoever can write to Redis
can put anything in those lists: an entry that does not decode is returned as an
`UndecodableEntry` saying why, never raised, and the rest of the list still reads.

Every entry is also one INFO line on the `cronwork.audit` logger.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from redis import Redis
from redis.exceptions import ResponseError

from cronwork.keys import Keys

log = logging.getLogger(__name__)

GLOBAL_CAP = 10_000  # entries of the whole trail (~300 bytes each: a few MB at most)
PER_SCHEDULE_CAP = 200  # entries of one schedule's list
SCHEDULE_TTL = 90 * 24 * 3600  # seconds a schedule's list lives after its last entry
MAX_LIMIT = GLOBAL_CAP
# Characters kept of each free-text field: an entry stays small whatever a request sent.
FIELD_LIMITS = {"actor": 100, "schedule": 200, "target": 300, "detail": 500, "remote": 100}
EXCERPT = 80  # characters of an undecodable entry shown with it


class Source(StrEnum):
    """Where an action came from."""

    PAGE = "page"
    API = "api"
    CLI = "cli"
    DASHBOARD = "dashboard"


class Action(StrEnum):
    """What an operator did."""

    PAUSE = "pause"
    RESUME = "resume"
    RUN_NOW = "run_now"
    REQUEUE = "requeue"
    REQUEUE_ALL = "requeue_all"
    DELETE = "delete"
    EMPTY = "empty"  # a queue or registry of rq-dashboard emptied
    COMPACT = "compact"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    SHIPMENT_RETRY = "shipment_retry"  # a failed rental put back to pending
    SCHEDULE_ADD = "schedule_add"  # a runtime schedule added
    SCHEDULE_UPDATE = "schedule_update"  # a runtime schedule replaced
    SCHEDULE_DELETE = "schedule_delete"  # a runtime schedule deleted
    BACKFILL = "backfill"  # the ticks of a past range enqueued
    CREATE_ADMIN = "create_admin"


class Outcome(StrEnum):
    """How the action ended: done, refused (bad input, unknown name, wrong credentials), or an error."""

    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"


class UndecodableEntryError(ValueError):
    """Stored data that is not an audit entry."""


@dataclass(frozen=True)
class AuditEntry:
    """One operator action."""

    actor: str  # user name, "token" for the API's bearer token, the OS user for the CLI
    source: Source
    action: Action
    schedule: str | None = None
    target: str | None = None  # a job id, a queue, "queue/registry" …
    detail: str = ""
    remote: str | None = None  # the client's address (web sources)
    outcome: Outcome = Outcome.OK
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        for name, limit in FIELD_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > limit:
                object.__setattr__(self, name, value[: limit - 1] + "…")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: enums as their values, `at` as UTC ISO 8601."""
        data = asdict(self)
        data.update(at=self.at.astimezone(UTC).isoformat(), source=str(self.source))
        data.update(action=str(self.action), outcome=str(self.outcome))
        return data

    def encode(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> AuditEntry:
        """The entry stored as `raw`; UndecodableEntryError (saying why) for anything else."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise UndecodableEntryError("not JSON") from None
        if not isinstance(data, dict):
            raise UndecodableEntryError(f"a JSON {type(data).__name__}, not an object")
        try:
            at = datetime.fromisoformat(_text(data, "at"))
            entry = cls(
                actor=_text(data, "actor"),
                source=Source(_text(data, "source")),
                action=Action(_text(data, "action")),
                schedule=_optional(data, "schedule"),
                target=_optional(data, "target"),
                detail=_optional(data, "detail") or "",
                remote=_optional(data, "remote"),
                outcome=Outcome(_text(data, "outcome")),
                at=at if at.tzinfo else at.replace(tzinfo=UTC),
            )
        except (ValueError, TypeError) as exc:
            raise UndecodableEntryError(str(exc)) from None
        return entry

    def describe(self) -> str:
        """The log line: who did what to what, from where, and how it ended."""
        return (
            f"audit actor={self.actor!r} action={self.action} schedule={self.schedule!r} "
            f"target={self.target!r} source={self.source} remote={self.remote} "
            f"outcome={self.outcome} detail={self.detail!r}"
        )


@dataclass(frozen=True)
class UndecodableEntry:
    """A list element that is not an audit entry: shown as such, with why and a short excerpt."""

    reason: str
    excerpt: str

    def to_dict(self) -> dict[str, Any]:
        return {"undecodable": True, "reason": self.reason, "excerpt": self.excerpt}


Read = AuditEntry | UndecodableEntry


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise TypeError(f"{name} is missing or not a string")
    return value


def _optional(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


def record(connection: Redis, keys: Keys, entry: AuditEntry) -> None:
    """Log the entry, then store it on the trail and on its schedule's list (one MULTI).

    Logged first: a Redis that refuses the write (down, wrong key type) still leaves the line."""
    log.info("%s", entry.describe())
    raw = entry.encode()
    with connection.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.audit, raw)
        pipe.ltrim(keys.audit, 0, GLOBAL_CAP - 1)
        if entry.schedule:
            pipe.lpush(keys.audit_of(entry.schedule), raw)
            pipe.ltrim(keys.audit_of(entry.schedule), 0, PER_SCHEDULE_CAP - 1)
            pipe.expire(keys.audit_of(entry.schedule), SCHEDULE_TTL)
        pipe.execute()


def recent(connection: Redis, keys: Keys, schedule: str | None = None, limit: int = 50) -> list[Read]:
    """The newest `limit` entries, newest first: the whole trail, or one schedule's."""
    key = keys.audit_of(schedule) if schedule else keys.audit
    try:
        raw = cast(list[bytes], connection.lrange(key, 0, max(min(limit, MAX_LIMIT), 1) - 1))
    except ResponseError as exc:  # WRONGTYPE: something else was written under the key
        log.warning("audit key=%s unreadable: %s", key, exc)
        return [UndecodableEntry(reason=f"key is not a list: {exc}", excerpt="")]
    return [decode(item) for item in raw]


def decode(raw: bytes) -> Read:
    """One list element: the entry, or what it is instead."""
    try:
        return AuditEntry.decode(raw)
    except UndecodableEntryError as exc:
        return UndecodableEntry(reason=str(exc), excerpt=raw[:EXCERPT].decode(errors="replace"))
