"""Runtime schedules: added, replaced and deleted by operators (API, CLI, ops pages) beside the file's.

A runtime schedule is validated exactly as the file's are: cronwork.loader.parse_schedule on a
one-schedule document with the file's [defaults] (the built-in ones without a file), so every
field and rule of schedule.toml applies, including the ones added later. It is registered as a
template with source `runtime` (cronwork.templates), under the lock a sync takes, so a sync and
an operator never interleave. A sync never touches it; it never takes a name the file declares.
The file's [defaults] apply when the schedule is written: a later change to them does not
reach a runtime schedule until it is written again.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from app.services.schedules import ScheduleActionError, ScheduleService, UnknownSchedule
from cronwork import store
from cronwork.keys import RQ_SCHEDULER_SET
from cronwork.loader import parse_schedule
from cronwork.spec import ScheduleError, ScheduleSpec
from cronwork.store import ScheduleSource
from cronwork.templates import TemplateWriter, keeps_place, sync_lock

log = logging.getLogger(__name__)

# What the loader's messages name as the file: stripped, so a problem reads "cron: …".
WHERE = "request"
NAME_HINT = "1-64 of a-z, 0-9, '_', '-'"


class InvalidSchedule(ScheduleActionError, ValueError):
    """A runtime schedule that schedule.toml would refuse; `problems` has one line per field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid schedule: " + "; ".join(problems))
        self.problems = problems


class ScheduleConflict(ScheduleActionError):
    """The name belongs to the other source, or is taken already (HTTP 409)."""


class WritersBusy(ScheduleActionError):
    """Another writer of templates (a sync) held the lock too long; retry (HTTP 503)."""


@dataclass(frozen=True)
class RuntimeChange:
    """What an add or an update wrote."""

    spec: ScheduleSpec
    submitted: dict[str, Any]  # the fields as the operator sent them, without the name


class RuntimeSchedules:
    """Adds, replaces and deletes runtime schedules in the Redis of a ScheduleService."""

    def __init__(self, schedules: ScheduleService) -> None:
        self.schedules = schedules
        self.connection = schedules.connection
        self.keys = schedules.keys

    @classmethod
    def for_app(cls, app: Flask | None = None) -> RuntimeSchedules:
        return cls(ScheduleService.for_app(app))

    # -- reading ---------------------------------------------------------------------------

    def submitted(self, name: str) -> dict[str, Any] | None:
        """The fields a runtime schedule was written with (None for any other schedule)."""
        found = store.definition(self.connection, self.keys, name)
        if found is None or found.source is not ScheduleSource.RUNTIME:
            return None
        return found.submitted or {}

    def validate(self, name: Any, fields: Mapping[str, Any]) -> ScheduleSpec:
        """The spec schedule.toml would give for [schedules.<name>] = fields; InvalidSchedule
        listing every problem otherwise. A runtime schedule must be able to run: a one-off in
        the past or `enabled = false` is refused (delete or pause it instead)."""
        if not isinstance(name, str) or not name:
            raise InvalidSchedule([f"name: required, a string of {NAME_HINT}"])
        table = {key: value for key, value in fields.items() if key != "name"}
        document = {"defaults": self._file_defaults(), "schedules": {name: table}}
        try:
            spec = parse_schedule(document, Path(WHERE)).specs[name]
        except ScheduleError as exc:
            raise InvalidSchedule([_field_message(error, name) for error in exc.errors]) from None
        if not spec.enabled:
            raise InvalidSchedule(["enabled: a runtime schedule runs while it exists: pause or delete it"])
        if spec.is_expired(self.schedules.clock()):
            raise InvalidSchedule([f"at: {table.get('at')} ({spec.timezone}) has passed"])
        return spec

    def _file_defaults(self) -> dict[str, Any]:
        """The schedule file's [defaults] (none without a readable file: the built-in ones apply)."""
        path = self.schedules.schedule_file
        if path is None:
            return {}
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            log.warning("schedule file unreadable, runtime schedule gets the built-in defaults: %s", exc)
            return {}
        defaults = document.get("defaults", {})
        return defaults if isinstance(defaults, dict) else {}

    # -- acting ----------------------------------------------------------------------------

    def add(self, fields: Mapping[str, Any]) -> RuntimeChange:
        """Register a new runtime schedule named by fields["name"]."""
        name = fields.get("name")
        spec = self.validate(name, fields)
        with self._lock():
            self._refuse_taken(spec.name)
            return self._write(spec, fields, keep_place=False)

    def update(self, name: str, fields: Mapping[str, Any]) -> RuntimeChange:
        """Replace a runtime schedule with `fields` (the whole spec; a `name` must be `name`).
        Its next tick is kept when its trigger and zone are."""
        if fields.get("name", name) != name:
            raise InvalidSchedule([f"name: {fields.get('name')!r} does not match the schedule {name!r}"])
        self._require_runtime(name)  # before validating: an unknown name is a 404 whatever the body
        spec = self.validate(name, fields)
        with self._lock():
            current = self._require_runtime(name)
            in_set = self.connection.zscore(RQ_SCHEDULER_SET, self.keys.template_id(name)) is not None
            return self._write(spec, fields, keep_place=in_set and keeps_place(current, spec))

    def delete(self, name: str) -> None:
        """Unregister a runtime schedule: the scheduler stops at once; its ledger stays."""
        with self._lock():
            self._require_runtime(name)
            with self.connection.pipeline(transaction=True) as pipe:
                store.unregister(pipe, self.keys, name)
                pipe.execute()
        log.info("runtime schedule=%s action=deleted", name)

    def _refuse_taken(self, name: str) -> None:
        current = store.definition(self.connection, self.keys, name)
        if name in self.schedules.declared() or (current and current.source is ScheduleSource.DECLARED):
            raise ScheduleConflict(
                f"{name!r} is declared in the schedule file: a runtime schedule cannot take it"
            )
        if current is not None:
            raise ScheduleConflict(f"a runtime schedule {name!r} exists already: update it instead")

    def _require_runtime(self, name: str) -> store.Definition:
        """The registered runtime definition of `name`; 404 or 409 errors for any other name."""
        current = store.definition(self.connection, self.keys, name)
        if current is not None and current.source is ScheduleSource.RUNTIME:
            return current
        if current is not None or name in self.schedules.declared():
            raise ScheduleConflict(
                f"{name!r} is declared in the schedule file: change it there (a sync owns it)"
            )
        raise UnknownSchedule(f"unknown runtime schedule {name!r}")

    def _write(self, spec: ScheduleSpec, fields: Mapping[str, Any], keep_place: bool) -> RuntimeChange:
        submitted = {key: value for key, value in fields.items() if key != "name"}
        with self.connection.pipeline(transaction=True) as pipe:
            TemplateWriter(self.connection, self.keys).write(
                pipe, spec, self.schedules.clock(), keep_place, ScheduleSource.RUNTIME, submitted
            )
            pipe.execute()
        log.info("runtime schedule=%s action=written func=%s", spec.name, spec.func)
        return RuntimeChange(spec=spec, submitted=submitted)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The lock every template writer takes (a sync too); its timeout is WritersBusy."""
        held = ExitStack()
        try:
            held.enter_context(sync_lock(self.connection, self.keys))
        except TimeoutError as exc:
            raise WritersBusy(f"{exc}; retry in a moment") from None
        with held:
            yield


def _field_message(error: str, name: str) -> str:
    """A loader message without the file and schedule it names: "cron: expected 5 or 6 fields"."""
    for prefix in (f"{WHERE}: schedules.{name}.", f"{WHERE}: schedules.{name}: ", f"{WHERE}: "):
        if error.startswith(prefix):
            return error[len(prefix) :]
    return error

