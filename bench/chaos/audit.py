"""The audit after a run: every rule of the package docstring, each tick first (ticks.py), then
the run as a whole: rule 4 from the kills' side, rules 7 and 8."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import Queue

from bench.chaos.cluster import ORPHAN_GRACE, Cluster
from bench.chaos.evidence import Evidence, Result
from bench.chaos.hostile import Planted, ran
from bench.chaos.inflight import Kill, Target, same_start
from bench.chaos.phases import SETTLE_MAX, leftovers
from bench.chaos.schedule import ABANDONED, FINAL, QUEUE
from bench.chaos.ticks import TickAuditor
from bench.chaos.timeline import Timeline, epoch, window_ticks
from cronwork.keys import RQ_SCHEDULER_SET, job_key
from cronwork.serializer import json_queue
from cronwork.spec import Schedule

RACE_SLACK = 0.5  # s: a job the ledger says ended this close to a kill raced it
REQUEUED_NEVER_STARTED = "its worker died before starting it"  # jobs.worker's log line


@dataclass(frozen=True)
class Hostile:
    """The marker the planted payloads write when unpickled, and what was planted."""

    marker: Path
    planted: Planted


def audit(
    conn: Redis, schedule: Schedule, cluster: Cluster, kills: list[Kill], timeline: Timeline, hostile: Hostile
) -> Result:
    """Check every rule; returns the figures and the violations."""
    evidence = Evidence(conn, cluster, Result(outages=outages(cluster, timeline)))
    targets = [t for k in [*kills, *cluster.crashes] for t in k.targets]
    if not timeline.settled:
        evidence.violation(f"not settled within {SETTLE_MAX:.0f}s: the checks below say what was left")
    ticks = TickAuditor(evidence, schedule, targets, timeline)
    for name, window in window_ticks(schedule, timeline).items():
        ticks.schedule(name, schedule.enabled[name].retries, window)
    _killed_runs(evidence, targets)
    _requeued(evidence)
    _stuck(evidence)
    _processes(evidence)
    _orphans(evidence, kills)
    _hostile(evidence, hostile)
    return evidence.result


def _covered(intervals: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The parts of [start, end] that no interval covers."""
    gaps, cursor = [], start
    for lo, hi in sorted(intervals):
        if lo > cursor:
            gaps.append((cursor, min(lo, end)))
        cursor = max(cursor, hi)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return [(lo, hi) for lo, hi in gaps if hi > lo]


def outages(cluster: Cluster, timeline: Timeline) -> list[tuple[float, float]]:
    """Intervals when no tick could be enqueued: Redis down, or no started scheduler alive."""
    alive = [
        (m.ready, m.ended if m.ended is not None else float("inf"))
        for m in cluster.history
        if m.role == "scheduler" and m.ready is not None
    ]
    found = _covered(alive, timeline.chaos_start, timeline.chaos_end)
    if timeline.redis_down:
        found.append((timeline.redis_down, timeline.redis_up))
    return sorted(found)


def _killed_runs(evidence: Evidence, targets: list[Target]) -> None:
    """Rule 4, from the kills' side: every killed run was abandoned, then retried or final."""
    for target in targets:
        attempts = evidence.ledger.attempts(target.schedule, target.tick)
        record = evidence.record(target.schedule, target.tick)
        mine = [i for i, a in enumerate(attempts) if same_start(a, target)]
        abandoned = [i for i in mine if attempts[i].get("error_type") == ABANDONED]
        ended = [epoch(attempts[i].get("ended_at")) for i in mine] or [epoch(record.get("ended_at"))]
        problem = ""
        if record.get("state") not in FINAL:
            problem = f"ends in {record.get('state')!r}"
        elif (
            abandoned
            and attempts[abandoned[0]].get("state") == "retrying"
            and abandoned[0] == len(attempts) - 1
        ):
            problem = "abandoned with a retry left, never retried"
        elif abandoned:
            evidence.result.lost[target.cause] += 1
            retried = attempts[abandoned[0]].get("state") == "retrying"
            evidence.result.lost[f"{target.cause} retried" if retried else f"{target.cause} final"] += 1
        elif target.cause == "crash":
            evidence.result.lost["crash finished by its orphaned horse"] += 1
        elif any(e is not None and e <= target.killed_at + RACE_SLACK for e in ended):
            evidence.result.lost["kill raced the end of the job"] += 1
        else:
            problem = "killed mid-job but never abandoned"
        if problem:
            evidence.violation(
                f"{target.cause} of run {target.job_id}: {problem} (rule 4)",
                target.job_id,
                target.schedule,
                target.tick,
            )


def _requeued(evidence: Evidence) -> None:
    """Count the runs a killed worker dequeued but never started; rq found them in its
    intermediate queue and our workers put them back (jobs.worker) instead of failing them."""
    evidence.result.lost["requeued, never started"] = sum(
        m.output().count(REQUEUED_NEVER_STARTED) for m in evidence.cluster.history if m.role == "worker"
    )


def _stuck(evidence: Evidence) -> None:
    """Rule 7: nothing queued, started, scheduled for retry or locked at the end."""
    evidence.result.leftovers = leftovers(evidence.conn)
    for kind, ids in evidence.result.leftovers.items():
        if ids:
            evidence.violation(f"{kind} is not empty at the end (rule 7): {ids[:10]}")
    # rq's registry-cleaning lock lives 899 s: a worker killed while holding it stops every
    # worker's abandoned-job detection for 15 minutes (all workers are stopped by now).
    lock = Queue(QUEUE, connection=evidence.conn).registry_cleaning_key
    if (ttl := evidence.conn.ttl(lock)) > 0:
        evidence.violation(
            f"{lock} left by a killed worker, {ttl}s to live: no abandoned detection till then (rule 7)"
        )


def _processes(evidence: Evidence) -> None:
    """Rule 8: no process exited unless the harness stopped it."""
    for member in evidence.cluster.unexpected:
        evidence.violation(
            f"{member.label} ({member.name}) exited by itself with {member.proc.returncode} (rule 8)\n"
            + "\n".join(f"    log {line}" for line in _crash_lines(member.output()))
        )


def _crash_lines(text: str, limit: int = 12) -> list[str]:
    """Why a process exited: its last error line, the project's and rq's frames, the exception."""
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if "unhandled exception" in line or " ERROR " in line]
    first = marks[-1] if marks else max(len(lines) - limit, 0)
    keep = [lines[first]]
    for line, code in zip(lines[first + 1 :], lines[first + 2 :], strict=False):
        if line.lstrip().startswith("File ") and any(
            p in line for p in ("/rq/", "/jobs/", "/scheduler_boot/")
        ):
            keep.append(f"{line.strip()}: {code.strip()}")
    last = next((line for line in reversed(lines) if line.strip()), "")
    tail = [line for line in lines[-4:] if line.strip() and line not in keep]
    return [line[:220] for line in keep[: limit - 1]] + [last[:220]] + ["... last lines:"] + tail


def _orphans(evidence: Evidence, kills: list[Kill]) -> None:
    """Rule 9: a worker SIGKILLed alone takes its children with it (their parent-death signal)."""
    alone = [k for k in kills if k.parent_only]
    evidence.result.lost["parent-only kills"] = len(alone)
    evidence.result.orphans_gone = max((k.orphans_gone for k in alone if k.children), default=0.0)
    for kill in alone:
        if kill.survivors:
            evidence.violation(
                f"{kill.member} SIGKILLed alone: children {kill.survivors} still ran"
                f" {ORPHAN_GRACE:.0f}s later (rule 9); the harness killed them"
            )


def _hostile(evidence: Evidence, hostile: Hostile) -> None:
    """Rule 10: no planted payload ever ran; nothing planted was run, requeued or lost."""
    conn, planted = evidence.conn, hostile.planted
    evidence.result.hostile = len(planted.all())
    if text := ran(hostile.marker):
        pids = {m.proc.pid: m.label for m in evidence.cluster.history}
        who = [pids.get(int(p), f"pid {p} (a work horse or child)") for p in re.findall(r"pid=(\d+)", text)]
        evidence.violation(f"a planted pickle payload ran, in: {', '.join(who)} (rule 10)")
    failed = json_queue(QUEUE, conn).failed_job_registry
    for job_id in planted.queue:
        status = conn.hget(job_key(job_id), "status")
        if status != b"failed" or job_id not in failed:
            evidence.violation(
                f"planted job {job_id} from the queue ended {status!r}, not refused as failed (rule 10)", job_id
            )
    for job_id in planted.failed:
        if job_id not in failed or conn.hget(job_key(job_id), "status") != b"failed":
            evidence.violation(f"planted job {job_id} left the failed registry (rule 10)", job_id)
    for job_id in planted.scheduled:
        score = conn.zscore(RQ_SCHEDULER_SET, job_id)
        if score is None or score < time.time() or not conn.exists(job_key(job_id)):
            evidence.violation(
                f"planted foreign scheduled job {job_id} was not left alone (score {score}) (rule 10)", job_id
            )
