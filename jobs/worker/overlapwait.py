"""A buffered run's wait is not its run time for rq's monitor either.

rq's worker kills the horse of a job that has run `timeout + 60` s, counting from the horse's
fork (Worker.monitor_work_horse). A buffer_one run may wait up to its lock's TTL (timeout + 70 s)
before it starts, and then is owed its whole timeout (jobs.overlap): while its record says
`buffered`, each heartbeat moves the start the monitor counts from to now. The monitor then
counts at most one monitoring interval of the wait, far inside rq's 60 s of slack; the horse's
own alarms (the timeout, the hard kill 10 s after it) still end a run that overruns.
"""

from __future__ import annotations

from rq.executions import Execution
from rq.job import Job
from rq.utils import now

from jobs.overlap import WAITING_POLICIES, overlap_policy
from jobs.worker.recording import AppBoundMixin


class OverlapWaitMixin(AppBoundMixin):
    """Keeps rq's monitor from killing a horse that is waiting for its schedule's overlap lock."""

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        super().maintain_heartbeats(job, execution)
        # One read every JOB_MONITORING_INTERVAL, only for the policies that wait.
        if overlap_policy(job) in WAITING_POLICIES and self.recorder.waiting(job):
            job.started_at = now()
