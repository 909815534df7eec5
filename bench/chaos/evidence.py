"""What the audit found: its figures, and each violation with the evidence that shows it."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from bench.chaos.cluster import Cluster
from bench.chaos.schedule import KEYS, QUEUE
from cronwork.ledger import Ledger


@dataclass
class Result:
    """What the audit found: figures and violations."""

    violations: list[str] = field(default_factory=list)
    states: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    retried: Counter[str] = field(default_factory=Counter)
    ran: dict[str, int] = field(default_factory=dict)
    lost: Counter[str] = field(default_factory=Counter)  # runs in flight on killed/crashed workers
    lags: list[float] = field(default_factory=list)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    outages: list[tuple[float, float]] = field(default_factory=list)
    hostile: int = 0  # hostile entries planted (rule 10)
    orphans_gone: float = 0.0  # s, slowest end of a worker's children after a parent-only kill


class Evidence:
    """Writes each violation down with what shows it: the ledger's record and attempts, rq's side
    of the job and the log lines that name it."""

    def __init__(self, conn: Redis, cluster: Cluster, result: Result) -> None:
        self.conn = conn
        self.ledger = Ledger(conn, KEYS)
        self.cluster = cluster
        self.result = result

    def violation(self, text: str, job_id: str | None = None, name: str = "", tick: int = 0) -> None:
        """Add a violation, with the run's ledger entries (`name`, `tick`) and rq's view (`job_id`)."""
        lines = [text]
        if name:
            lines.append(f"    record:   {json.dumps(self.record(name, tick), sort_keys=True)}")
            for attempt in self.ledger.attempts(name, tick):
                lines.append(f"    attempt:  {json.dumps(attempt, sort_keys=True)}")
        if job_id:
            lines.append(f"    rq:       {self._rq_view(job_id)}")
            lines += [f"    log {line}" for line in self._log_lines(job_id)]
        self.result.violations.append("\n".join(lines))

    def _rq_view(self, job_id: str) -> str:
        """rq's side of a run: its status, registries and the fate of the worker that had it."""
        fields = ("status", "worker_name", "started_at", "ended_at")
        values = dict(zip(fields, self.conn.hmget(f"rq:job:{job_id}", *fields), strict=True))
        text = " ".join(f"{k}={v.decode() if v else '-'}" for k, v in values.items())
        registries = {
            "started": StartedJobRegistry(QUEUE, connection=self.conn),
            "failed": FailedJobRegistry(QUEUE, connection=self.conn),
            "finished": FinishedJobRegistry(QUEUE, connection=self.conn),
            "scheduled": ScheduledJobRegistry(QUEUE, connection=self.conn),
        }
        inside = [n for n, r in registries.items() if job_id in r.get_job_ids(cleanup=False)]
        text += f" registries={','.join(inside) or '-'}"
        worker = values["worker_name"].decode() if values["worker_name"] else ""
        for member in self.cluster.history:
            if worker and member.name == worker:
                ended = datetime.fromtimestamp(member.ended, UTC) if member.ended else None
                text += f"; {member.label} {member.fate}" + (f" at {ended:%H:%M:%S.%f}"[:-3] if ended else "")
        return text

    def record(self, name: str, tick: int) -> dict[str, Any]:
        """The ledger's record of one tick ({} when there is none)."""
        return next((r for r in self.ledger.history(name, 500) if r["tick"] == tick), {})

    def _log_lines(self, job_id: str, limit: int = 12) -> list[str]:
        found = []
        for member in self.cluster.history:
            found += [f"{member.label}: {line}" for line in member.output().splitlines() if job_id in line]
        return found[:limit]
