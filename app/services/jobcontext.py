"""Who is running: the current RQ job id (None outside a worker) and a claimant name."""

from __future__ import annotations

import os
import socket

from rq import get_current_job


def current_job_id() -> str | None:
    """The id of the RQ job being performed, or None when called outside a worker."""
    job = get_current_job()
    return job.id if job else None


def claimant() -> str:
    """A name for rows this run claims: the RQ job id, else host:pid (≤ 128 characters)."""
    return (current_job_id() or f"{socket.gethostname()}:{os.getpid()}")[:128]
