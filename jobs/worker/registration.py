"""The worker's key `rq:worker:<name>`: short-lived, so a dead worker's name is free again soon.

rq keeps the key 480 s after the last idle heartbeat (worker_ttl + 60) and 70 s while busy;
`register_birth` refuses a name whose key still exists, so a worker restarted under the same
`--name` (compose, systemd, a per-PID supervisor) after a SIGKILL could not start for up to
8 minutes. Here the key lives WORKER_KEY_TTL after the last heartbeat, whatever the state.
"""

from __future__ import annotations

from redis.client import Pipeline
from rq import Worker, worker_registration

from jobs.worker.defaults import WORKER_KEY_TTL


class WorkerKeyMixin(Worker):
    """Caps the worker key's TTL and re-registers the worker when its key had expired."""

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        ttl = min(timeout or WORKER_KEY_TTL, WORKER_KEY_TTL)
        if pipeline is not None:
            super().heartbeat(ttl, pipeline)
            return
        with self.connection.pipeline() as pipe:
            super().heartbeat(ttl, pipe)
            # rq's heartbeat starts with HSET last_heartbeat: 1 means the field was new, so
            # the key had expired (an outage longer than the TTL) and now holds that field
            # only; the same test as rq's maintain_heartbeats (rq/rq#1450).
            recreated = pipe.execute()[0] == 1
        if recreated and self.birth_date is not None:
            self.log.warning("worker key %s had expired: registering the worker again", self.key)
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping={**self.serialize(), "state": self.get_state()})
                worker_registration.register(self, pipe)
                pipe.expire(self.key, ttl)
                pipe.execute()
