"""What Cronwork's worker relies on in rq 3.0 and rq-scheduler 0.14, pinned.

jobs/worker/ overrides rq methods, reads a few private attributes, recognises one situation by
its message and caps rq constants. Each of those is checked here, on real rq code and a real
Redis, so an upgrade that changes one fails in the suite with a message saying what changed
and which mixin to review (instead of the pin in pyproject.toml being the only guard).
"""

from __future__ import annotations

import inspect
import json
import pickle
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rq
import rq.command
from redis import Redis
from redis.driver_info import DriverInfo
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import BaseWorker
from rq_scheduler import Scheduler

from cronwork.connection import make_redis
from cronwork.serializer import JOB_SERIALIZER, JSONJob, json_queue
from jobs.worker import CronworkWorker
from jobs.worker.build import resolve_client_info_once
from jobs.worker.intermediate import STUCK_IN_INTERMEDIATE
from jobs.worker.recording import retry_without_rerun
from jobs.worker.refusal import refusal

# rq's signature of every rq method a jobs.worker mixin overrides (str(inspect.signature)).
OVERRIDDEN = {
    "__init__": (
        "(self, queues: 'str | Queue | Sequence[str] | Sequence[Queue]', name: 'str | None' = None, "
        "default_result_ttl=500, connection: 'Redis | None' = None, exception_handlers=None, "
        "maintenance_interval: 'int' = 600, default_worker_ttl: 'int | None' = None, "
        "worker_ttl: 'int | None' = None, job_class: 'type[Job] | str | None' = None, "
        "queue_class: 'type[Queue] | str | None' = None, log_job_description: 'bool' = True, "
        "job_monitoring_interval=30, disable_default_exception_handler: 'bool' = False, "
        "prepare_for_work: 'bool' = True, serializer: 'Serializer | str | None' = None, "
        "work_horse_killed_handler: 'Callable[[Job, int, int, struct_rusage], None] | None' = None)"
    ),
    "bootstrap": (
        "(self, logging_level: 'str | None' = 'INFO', date_format: 'str' = '%H:%M:%S', "
        "log_format: 'str' = '%(asctime)s %(message)s')"
    ),
    "check_for_suspension": "(self, burst: 'bool')",
    "dequeue_job_and_maintain_ttl": (
        "(self, timeout: 'int | None', max_idle_time: 'int | None' = None) -> 'tuple[Job, Queue] | None'"
    ),
    "execute_job": "(self, job: 'Job', queue: 'Queue')",
    "fork_work_horse": "(self, job: 'Job', queue: 'Queue')",
    "get_heartbeat_ttl": "(self, job: 'Job', working_time: 'float' = 0.0) -> 'int'",
    "handle_job_failure": (
        "(self, job: 'Job', queue: 'Queue', started_job_registry=None, exc_string='', "
        "execution: 'Execution | None' = None)"
    ),
    "handle_job_success": (
        "(self, job: 'Job', queue: 'Queue', started_job_registry: 'StartedJobRegistry', "
        "execution: 'Execution')"
    ),
    "heartbeat": "(self, timeout: 'int | None' = None, pipeline: 'Pipeline | None' = None)",
    "maintain_heartbeats": "(self, job: 'Job', execution: 'Execution')",
    "request_stop": "(self, signum, frame)",
    "run_maintenance_tasks": "(self)",
    "set_state": "(self, state: 'str', pipeline: 'Pipeline | None' = None)",
    "teardown": "(self)",
}
# rq attributes replaced (not methods): their kind stays what the mixins assume.
REPLACED_ATTRIBUTES = {
    "death_penalty_class": type,
    "dequeue_timeout": property,
    "max_connection_wait_time": float,
}
# rq methods the mixins call, with the arguments they pass.
CALLED = {
    "prepare_execution": "(self, job: 'Job') -> 'Execution'",
    "monitor_work_horse": "(self, job: 'Job', queue: 'Queue', execution: 'Execution')",
    "increment_failed_job_count": "(self, pipeline: 'Pipeline | None' = None)",
    "serialize": "(self) -> 'dict'",
    "push_exc_handler": "(self, handler_func)",
    "cleanup_execution": "(self, job: 'Job', pipeline: 'Pipeline', execution: 'Execution | None' = None)",
}


def ours() -> dict[str, type]:
    """Every name a jobs.worker class defines, and the class defining it first in the MRO."""
    found: dict[str, type] = {}
    for cls in CronworkWorker.__mro__:
        if cls.__module__.startswith("jobs.worker"):
            for name in vars(cls):
                if name == "__init__" or not name.startswith("__"):
                    found.setdefault(name, cls)
    return found


def test_rq_version_is_the_one_pinned_here() -> None:
    assert rq.__version__ == "3.0.0", "rq upgraded: review every pin in this module, then update it"


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_signature_of_each_overridden_method(name: str) -> None:
    theirs = str(inspect.signature(getattr(Worker, name)))
    assert theirs == OVERRIDDEN[name], (
        f"rq changed Worker.{name}{OVERRIDDEN[name]} to {theirs}: review {ours()[name].__qualname__}"
    )
    mine = inspect.signature(getattr(ours()[name], name))
    if name != "__init__":  # the mixins' __init__ forwards *args, **kwargs
        assert [(p.name, p.kind) for p in mine.parameters.values()] == [
            (p.name, p.kind) for p in inspect.signature(getattr(Worker, name)).parameters.values()
        ], f"{ours()[name].__qualname__}.{name} no longer takes rq's parameters"


def test_every_override_is_pinned_and_no_helper_shadows_rq() -> None:
    for name, cls in ours().items():
        if name in REPLACED_ATTRIBUTES:
            assert isinstance(inspect.getattr_static(Worker, name), REPLACED_ATTRIBUTES[name]), name
        elif hasattr(Worker, name):
            assert name in OVERRIDDEN, f"{cls.__qualname__}.{name} overrides rq: pin its signature here"
        # else: our own helper; rq has no such name, so it overrides nothing by accident.


@pytest.mark.parametrize("name", sorted(CALLED))
def test_signature_of_each_called_method(name: str) -> None:
    theirs = str(inspect.signature(getattr(Worker, name)))
    assert theirs == CALLED[name], f"rq changed Worker.{name}{CALLED[name]} to {theirs}"


def test_queue_methods_overridden_and_how_maintenance_uses_them() -> None:
    """CronworkQueue overrides these; RefusingQueue.fetch_job returns None for an unreadable
    hash, which rq's intermediate-queue cleanup must treat as a missing job (drop the entry)."""
    assert str(inspect.signature(Queue.fetch_job)) == "(self, job_id: 'str') -> 'Job | None'"
    assert str(inspect.signature(Queue.acquire_maintenance_lock)) == "(self) -> 'bool'"
    assert "except NoSuchJobError:" in inspect.getsource(Queue.fetch_job)
    cleanup = inspect.getsource(IntermediateQueue.cleanup)
    assert "job = queue.fetch_job(job_id)" in cleanup
    assert "if not job:" in cleanup and "self.remove(job_id)" in cleanup


def test_constants_the_worker_caps() -> None:
    """The rq defaults jobs/worker/defaults.py replaces, and where rq reads them."""
    assert BaseWorker.max_connection_wait_time == 60.0 and BaseWorker.exponential_backoff_factor == 2.0
    dequeue = inspect.getsource(BaseWorker.dequeue_job_and_maintain_ttl)
    assert "min(connection_wait_time, self.max_connection_wait_time)" in dequeue, (
        "rq's dequeue no longer caps its reconnect backoff with self.max_connection_wait_time: "
        "OutageMixin's cap does nothing"
    )
    assert rq.defaults.DEFAULT_MAINTENANCE_TASK_INTERVAL == 600
    assert rq.defaults.DEFAULT_JOB_MONITORING_INTERVAL == 30
    assert rq.defaults.DEFAULT_WORKER_TTL == 420
    assert "ex=899" in inspect.getsource(Queue.acquire_maintenance_lock)  # CronworkQueue: 30 s
    assert "self.worker_ttl + 60" in inspect.getsource(BaseWorker.heartbeat)  # WorkerKeyMixin caps it
    assert "self.job_monitoring_interval + 60" in inspect.getsource(BaseWorker.maintain_heartbeats)


def test_private_attributes_read() -> None:
    """`_stopped_job_id`: how rq tells a job stopped on request (not retried) from a failure."""
    source = inspect.getsource(BaseWorker.handle_job_failure)
    assert "job_is_stopped = self._stopped_job_id == job.id" in source
    assert "retry = job.should_retry and not job_is_stopped" in source
    assert "self._stopped_job_id = execution.job_id" in inspect.getsource(BaseWorker.request_stop_execution)


def test_monitor_and_stop_job_as_the_waiting_overlap_policies_use_them() -> None:
    """jobs/worker/overlapwait.py: rq's monitor kills a horse `timeout + 60` s after the start it
    counts from, `job.started_at`, and heartbeats between two checks. cancel_other (jobs.overlap)
    sends rq's stop-job command, which marks the job stopped before killing its horse; the
    recording then moves the stopped job from the failed registry with `Job.cancel`."""
    monitor = inspect.getsource(Worker.monitor_work_horse)
    assert "working_time = (now() - job.started_at).total_seconds()" in monitor
    assert "working_time > (job.timeout + 60)" in monitor
    assert monitor.index("working_time > (job.timeout + 60)") < monitor.index("self.maintain_heartbeats(job")
    stop = inspect.getsource(rq.command.handle_stop_job_command)
    assert stop.index("worker._stopped_job_id = job_id") < stop.index("worker.kill_horse()")
    assert "JobStatus.FAILED, JobStatus.STOPPED" in inspect.getsource(Job._remove_from_registries)


def test_return_value_is_on_job_result_when_success_is_handled(redis: Redis) -> None:
    """RunRecordingMixin.handle_job_success reads the return value from `job._result`."""
    seen: list[Any] = []

    class Probe(SimpleWorker):
        def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> None:
            seen.append(job._result)
            super().handle_job_success(job, *args, **kwargs)

    queue = json_queue("contract", redis)
    queue.enqueue("jobs.diagnostics.sleep", 0)
    Probe([queue], connection=redis, job_class=JSONJob, serializer=JOB_SERIALIZER).work(burst=True)
    assert seen == [{"slept": 0}]


def test_stuck_intermediate_job_is_failed_with_this_exact_message(redis: Redis) -> None:
    """rq gives no exception type for it: IntermediateQueueMixin matches this text."""
    failures: list[str] = []

    class Probe(SimpleWorker):
        def handle_job_failure(
            self, job: Job, queue: Queue, *args: Any, exc_string: str = "", **kw: Any
        ) -> None:
            failures.append(exc_string)

    queue = json_queue("contract", redis)
    job = queue.enqueue("jobs.diagnostics.sleep", 0)
    redis.lmove(queue.key, queue.intermediate_queue_key)
    redis.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - 120)
    queue.intermediate_queue.cleanup(Probe([queue], connection=redis), queue)
    assert failures == [STUCK_IN_INTERMEDIATE]


def test_abandoned_jobs_reach_exception_handlers_as_abandoned_job_error(redis: Redis) -> None:
    """RunRecordingMixin classifies by this type; rq then retries or fails the job itself."""
    handled: list[type] = []
    queue = json_queue("contract", redis)
    job = queue.enqueue("jobs.diagnostics.sleep", 0)
    job.set_status(JobStatus.STARTED)
    registry = StartedJobRegistry(queue=queue)
    redis.zadd(registry.key, {f"{job.id}:dead-execution": time.time() - 10})

    def handler(job: Job, exc_type: type, exc_value: BaseException, tb: Any) -> bool:
        handled.append(exc_type)
        return True

    registry.cleanup(exception_handlers=[handler])
    assert handled == [AbandonedJobError]
    assert job.get_status(refresh=True) == JobStatus.FAILED


def test_an_abandoned_job_is_retried_when_a_handler_gives_it_a_retry(redis: Redis) -> None:
    """jobs.worker.recording.retry_without_rerun relies on rq reading `retries_left` (and the
    retry interval) only after the exception handlers ran."""
    queue = json_queue("contract", redis)
    job = queue.enqueue("jobs.diagnostics.sleep", 0)
    queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    registry = StartedJobRegistry(queue=queue)
    redis.zadd(registry.key, {f"{job.id}:dead-execution": time.time() - 10})

    def handler(job: Job, exc_type: type, exc_value: BaseException, tb: Any) -> bool:
        retry_without_rerun(job)
        return True

    registry.cleanup(exception_handlers=[handler])
    assert job.get_status(refresh=True) == JobStatus.QUEUED and job.id in queue.job_ids
    assert job.id not in queue.failed_job_registry


def test_messages_matched_in_failure_text() -> None:
    """jobs/outcomes.py classifies these from the text rq hands the failure handler."""
    monitor = inspect.getsource(Worker.monitor_work_horse)
    assert "Work-horse terminated unexpectedly" in monitor
    assert rq.timeouts.JobTimeoutException.__name__ == "JobTimeoutException"
    assert "AbandonedJobError.__name__" in inspect.getsource(StartedJobRegistry.cleanup)


def write_raw(redis: Redis, job_id: str, **fields: bytes | str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    base: dict[str, bytes | str] = {"origin": "contract", "status": "queued", "created_at": now}
    redis.hset(f"rq:job:{job_id}", mapping={**base, **fields})


def test_undecodable_data_and_meta_as_rq_reports_them(redis: Redis) -> None:
    """The refusal (through cronwork.jobdata) relies on: fetch decodes nothing of `data`;
    func_name raises DeserializationError caused by the JSON error; an unreadable meta is
    hidden in {"unserialized": <bytes>} (so the raw hash is read again)."""
    write_raw(redis, "pickled", data=pickle.dumps(("x", None, (), {})), meta=pickle.dumps({"a": 1}))
    job = JSONJob.fetch("pickled", connection=redis)  # no error: data is decoded lazily
    assert job.meta == {"unserialized": pickle.dumps({"a": 1})}
    with pytest.raises(DeserializationError) as raised:
        _ = job.func_name
    assert isinstance(raised.value.__cause__, json.JSONDecodeError | UnicodeDecodeError)
    write_raw(redis, "short", data=b'["jobs.diagnostics.sleep"]', meta=b"{}")
    with pytest.raises(DeserializationError) as raised:
        _ = JSONJob.fetch("short", connection=redis).func_name
    assert isinstance(raised.value.__cause__, ValueError)
    assert not isinstance(raised.value.__cause__, json.JSONDecodeError)


def test_dequeue_does_not_decode_data_and_tags_unreadable_hashes(redis: Redis) -> None:
    """RefusalMixin checks a job after rq's dequeue, so that dequeue must not decode `data`
    (rq logs job.description, not func_name); an unreadable hash raises with job_id/queue."""
    queue = json_queue("contract", redis)
    write_raw(redis, "garbage", data=b"\x00\xff", meta=b"{}")
    redis.rpush(queue.key, "garbage")
    worker = Worker([queue], connection=redis, job_class=JSONJob, serializer=JOB_SERIALIZER)
    result = worker.dequeue_job_and_maintain_ttl(None)
    assert result is not None and result[0].id == "garbage"

    write_raw(redis, "bogus", data=b'["jobs.x", null, [], {}]', status="bogus")
    redis.rpush(queue.key, "bogus")
    with pytest.raises(ValueError) as raised:
        worker.dequeue_job_and_maintain_ttl(None)
    assert getattr(raised.value, "job_id", None) == "bogus"
    assert isinstance(getattr(raised.value, "queue", None), Queue)


def test_heartbeat_on_a_pipeline_starts_with_hset_of_last_heartbeat(redis: Redis) -> None:
    """WorkerKeyMixin reads the first reply: 1 when the worker key had expired."""
    worker = Worker(["contract"], connection=redis)
    for expected in (1, 0):
        with redis.pipeline() as pipe:
            Worker.heartbeat(worker, 45, pipe)
            assert pipe.execute()[0] == expected
    assert 0 < redis.ttl(worker.key) <= 45


def test_the_worker_state_is_written_by_set_state_alone() -> None:
    """WorkerKeyMixin.set_state skips writing the state this process last wrote: rq must keep
    it in what get_state returns and write it nowhere else (serialize leaves it out)."""
    assert inspect.getsource(rq.worker.base).count("'state'") == 2  # set_state's HSET, refresh's read
    assert "connection.hset(self.key, 'state', state)" in inspect.getsource(BaseWorker.set_state)
    assert "self._state = state" in inspect.getsource(BaseWorker.set_state)
    assert "return self._state" in inspect.getsource(BaseWorker.get_state)
    assert "state" not in inspect.getsource(BaseWorker.serialize)


def test_a_live_worker_key_blocks_the_name(redis: Redis) -> None:
    """Why a dead worker's key must expire (WorkerKeyMixin) and never be re-created by an
    orphan horse (ParentDeathMixin): register_birth refuses the name while it exists."""
    redis.hset("rq:worker:taken", "state", "busy")
    with pytest.raises(ValueError, match="There exists an active worker named 'taken' already"):
        Worker(["contract"], connection=redis, name="taken").register_birth()


def test_horse_and_scheduler_are_forked_by_python() -> None:
    """ParentDeathMixin arms the signal in an os.register_at_fork hook: rq must fork with
    os.fork (horse, in its own process group) and multiprocessing's fork (scheduler)."""
    fork = inspect.getsource(Worker.fork_work_horse)
    assert "os.fork()" in fork and "os.setpgrp()" in fork
    assert rq.scheduler.ForkProcess._start_method == "fork"  # type: ignore[attr-defined]
    assert "ForkProcess(" in inspect.getsource(rq.scheduler.RQScheduler.start)


def test_rq_scheduler_writes_json_jobs_that_are_not_refused(redis: Redis) -> None:
    """rq-scheduler 0.14 stores jobs with the job class it is given (JSONJob): the runs it
    moves to a queue pass RefusalMixin."""
    scheduler = Scheduler(connection=redis, job_class=JSONJob)
    job = scheduler.enqueue_at(datetime.now(UTC) + timedelta(hours=1), "jobs.diagnostics.sleep", 0)
    stored = JSONJob.fetch(job.id, connection=redis)
    assert json.loads(stored.data)[0] == "jobs.diagnostics.sleep"
    assert refusal(redis, stored) is None


def test_a_pools_driver_info_reaches_every_new_connection(redis_url: str) -> None:
    """jobs.worker.build.resolve_client_info_once (redis-py 8): each new connection (one per
    horse) takes the pool's `connection_kwargs`, uses a DriverInfo found there as it is instead
    of resolving the library version from the package metadata again, and so tells Redis the
    same CLIENT SETINFO as a client left to its defaults."""
    client = make_redis(redis_url)
    default = client.connection_pool.make_connection().driver_info
    assert "get_lib_version()" in inspect.getsource(DriverInfo.__post_init__)
    resolve_client_info_once(client)
    made = client.connection_pool.make_connection().driver_info
    assert made is client.connection_pool.connection_kwargs["driver_info"]
    assert default is not None and made is not None
    assert (made.formatted_name, made.lib_version) == (default.formatted_name, default.lib_version)
    client.close()
