"""The run lifecycle: what happened to each occurrence of a schedule."""

from __future__ import annotations

from rq.job import Job

MAX_TEXT = 500  # characters of a result or error kept in the ledger


def schedule_of(job: Job) -> str | None:
    """The Cronwork schedule a run belongs to, from its meta."""
    name = job.meta.get("cronwork_schedule") if job.meta else None
    return str(name) if name else None


def error_fields(exc_string: str) -> dict[str, str]:
    """The error's type and message from a formatted traceback (its last line)."""
    last = next((line for line in reversed(exc_string.strip().splitlines()) if line.strip()), "")
    error_type, _, message = last.partition(": ")
    if not message or " " in error_type:
        error_type, message = "Error", last
    return {"error_type": error_type.rsplit(".", 1)[-1][:100], "error": message[:MAX_TEXT]}
