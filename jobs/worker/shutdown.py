"""Graceful stop: SIGTERM lets the current job finish for up to a grace, then stops it.

rq's warm shutdown waits for the job however long it runs, and a second signal kills it at
once; a deploy (compose `stop_grace_period`) needs a bound in between.
"""

from __future__ import annotations

import threading
from types import FrameType
from typing import Any

from rq import Worker

from jobs.worker.defaults import SHUTDOWN_GRACE


class GracefulStopMixin(Worker):
    """Warm shutdown bounded by `shutdown_grace` seconds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_grace = SHUTDOWN_GRACE
        self._grace_timer: threading.Timer | None = None

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown; a job still running after the grace is stopped."""
        if self.horse_pid and self._grace_timer is None:
            self.log.info("stopping: waiting up to %.0fs for job to finish", self.shutdown_grace)
            self._grace_timer = threading.Timer(self.shutdown_grace, self._grace_expired)
            self._grace_timer.daemon = True
            self._grace_timer.start()
        super().request_stop(signum, frame)

    def _grace_expired(self) -> None:
        if self.horse_pid:
            self.log.warning("shutdown grace of %.0fs over: stopping the running job", self.shutdown_grace)
            self.kill_horse()
