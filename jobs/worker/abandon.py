"""Fast abandon detection: a SIGKILLed worker's run is failed or retried within about a minute.

rq finds a dead worker's job only when the job's heartbeat has expired (job monitoring
interval + 60 s) and some worker cleans the registries (every 600 s, and an idle worker
blocks in its dequeue for up to 405 s first): up to ten minutes. Here: heartbeats every
JOB_MONITORING_INTERVAL, HEARTBEAT_GRACE of slack, maintenance every MAINTENANCE_INTERVAL.
"""

from __future__ import annotations

from typing import Any

from rq import Queue, Worker
from rq.job import Job

from jobs.worker.defaults import (
    HEARTBEAT_GRACE,
    JOB_MONITORING_INTERVAL,
    MAINTENANCE_INTERVAL,
    MAINTENANCE_LOCK_TTL,
)


class MaintenanceLockQueue(Queue):
    """rq's Queue with a maintenance lock that lives MAINTENANCE_LOCK_TTL, not 899 s.

    A worker that dies holding rq's lock stopped every worker's registry cleaning, and so
    abandoned-job detection, for up to 15 minutes (found by bench/chaos).
    """

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=MAINTENANCE_LOCK_TTL))


class FastAbandonMixin(Worker):
    """Short job heartbeats and frequent registry cleaning (RunRecordingMixin records the runs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker must wake up to run maintenance, or abandoned jobs wait 405 s.
        return min(super().dequeue_timeout, MAINTENANCE_INTERVAL)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        remaining = (job.timeout or self.job_monitoring_interval) - working_time
        return int(max(min(remaining, self.job_monitoring_interval), 1)) + HEARTBEAT_GRACE
