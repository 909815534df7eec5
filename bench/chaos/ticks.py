"""The rules checked tick by tick from the ledger and the run lists: 1, 2, 3, 5, 6, and rule 4's
abandoned attempts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench.chaos.evidence import Evidence
from bench.chaos.inflight import Target, same_start
from bench.chaos.schedule import (
    ABANDONED,
    EXACTLY_ONCE,
    EXPECTED,
    FINAL,
    KEYS,
    ONCE_PER_ATTEMPT,
    RAN_KEY,
    STATES,
)
from bench.chaos.timeline import Timeline, epoch
from cronwork.misfire import ON_TIME_TOLERANCE
from cronwork.ratelimit import RateLimit
from cronwork.spec import Schedule, ScheduleSpec
from jobs.runtime import HARD_KILL_GRACE

MISS_SLACK = 2.0  # s before an outage a tick may already be unhandled (one pass + margin)


class TickAuditor:
    """Checks every tick of the chaos window against the rules of the package docstring."""

    def __init__(
        self, evidence: Evidence, schedule: Schedule, targets: list[Target], timeline: Timeline
    ) -> None:
        # The run-wide checks (audit.py) write to the same evidence: one list, in audit order.
        self.conn = evidence.conn
        self.ledger = evidence.ledger
        self.result = evidence.result
        self.violation = evidence.violation
        self.timeouts = {name: spec.timeout for name, spec in schedule.enabled.items()}
        self.specs = dict(schedule.enabled)
        self.targets = targets
        self.timeline = timeline

    def schedule(self, name: str, retries: int, ticks: list[int]) -> None:
        records = {r["tick"]: r for r in self.ledger.history(name, 2000)}
        ran: Counter[int] | None = None
        if name in EXACTLY_ONCE + ONCE_PER_ATTEMPT:
            values = [v.decode() for v in self.conn.lrange(RAN_KEY.format(name), 0, -1)]
            ran = Counter(int(epoch(v) or 0) for v in values)
            self.result.ran[name] = sum(ran[t] for t in ticks)
            if name in EXACTLY_ONCE:
                for tick, count in sorted(ran.items()):
                    if count > 1:
                        self.violation(
                            f"{name} tick {tick}: ran {count} times (rule 5)", KEYS.run_id(name, tick)
                        )
        for tick in ticks:
            record = records.get(tick)
            if record is None:
                self.result.states[name]["other"] += 1
                self.violation(f"{name} tick {tick}: no ledger record (rule 1)")
                continue
            state = str(record.get("state"))
            self.result.states[name][state if state in STATES else "other"] += 1
            if isinstance(record.get("lag"), int | float):
                self.result.lags.append(float(record["lag"]))
                if record["lag"] < 0:
                    self.violation(
                        f"{name} tick {tick}: pushed {-record['lag']:.3f}s before its tick by Redis's clock "
                        f"by {record.get('scheduler')} (rule 11)",
                        KEYS.run_id(name, tick),
                    )
            self.tick(name, retries, tick, record, ran)
        spec = self.specs[name]
        if spec.jitter:
            self.jitters(name, spec, [records[t] for t in ticks if t in records])
        if spec.rate_limit is not None:
            self.rate_window(name, spec.rate_limit, [records[t] for t in ticks if t in records])

    def jitters(self, name: str, spec: ScheduleSpec, records: list[dict[str, Any]]) -> None:
        """Rule 12: a pushed run's jitter is the one its (schedule, tick) derives, whichever
        replica pushed it (the skewed one included), and it was pushed after tick + jitter."""
        for record in records:
            if "enqueued_at" not in record:
                continue
            tick, expected = record["tick"], spec.jitter_of(record["tick"])
            if abs(float(record.get("jitter", -1)) - expected) > 0.0015:
                self.violation(
                    f"{name} tick {tick}: jitter {record.get('jitter')} pushed by {record.get('scheduler')}, "
                    f"expected {expected} (rule 12)",
                    KEYS.run_id(name, tick),
                )
            pushed = epoch(record["enqueued_at"])
            if pushed is not None and pushed < tick + expected - 0.001:
                self.violation(
                    f"{name} tick {tick}: pushed {tick + expected - pushed:.3f}s before tick + jitter (rule 12)",
                    KEYS.run_id(name, tick),
                )

    def rate_window(self, name: str, rate: RateLimit, records: list[dict[str, Any]]) -> None:
        """Rule 13: never more than `rate.limit` runs enqueued in any `rate.window` s (by the
        push times, Redis's clock), and a refused tick was enqueued by nothing."""
        pushes = sorted(t for r in records if (t := epoch(r.get("enqueued_at"))) is not None)
        for first, later in zip(pushes, pushes[rate.limit :], strict=False):
            if later - first < rate.window - 0.001:
                self.violation(
                    f"{name}: {rate.limit + 1} runs enqueued within {later - first:.3f}s, "
                    f"limit {rate.text} (rule 13)"
                )
        for record in records:
            if record.get("state") == "rate_limited" and self.ledger.attempts(name, record["tick"]):
                self.violation(
                    f"{name} tick {record['tick']}: rate_limited but it has attempts (rule 13)",
                    KEYS.run_id(name, record["tick"]),
                )

    def tick(
        self, name: str, retries: int, tick: int, record: dict[str, Any], ran: Counter[int] | None
    ) -> None:
        state = str(record.get("state"))
        job_id = KEYS.run_id(name, tick)
        where = f"{name} tick {tick} ({datetime.fromtimestamp(tick, UTC):%H:%M:%S})"
        if state not in FINAL:
            self.violation(f"{where}: stuck in {state!r} (rule 1)", job_id, name, tick)
            return
        attempts = self.ledger.attempts(name, tick)
        if state == "missed":
            self.missed(where, tick, record, attempts, ran)
            return
        if state == "rate_limited":
            if attempts or (ran is not None and ran[tick]):
                self.violation(f"{where}: rate_limited but it ran (rule 13)", job_id, name, tick)
            return
        if state not in EXPECTED[name]:
            excuse = self.excuse(name, attempts[-1]) if attempts and state == "failed" else None
            if excuse:
                self.result.lost[excuse] += 1
            else:
                self.violation(
                    f"{where}: {state!r} is not an outcome this schedule can reach (rule 2)",
                    job_id,
                    name,
                    tick,
                )
        if record.get("job_id") != job_id:
            self.violation(f"{where}: record names job {record.get('job_id')!r} (rule 1)", job_id, name, tick)
        self.attempts(where, job_id, name, tick, retries, state, attempts)
        if ran is not None:
            self.ran(where, name, tick, state, len(attempts), ran[tick])

    def missed(
        self,
        where: str,
        tick: int,
        record: dict[str, Any],
        attempts: list[dict[str, Any]],
        ran: Counter[int] | None,
    ) -> None:
        handled = epoch(record.get("missed_at"))
        late = handled is not None and handled - tick > ON_TIME_TOLERANCE
        in_outage = any(lo - MISS_SLACK <= tick <= hi for lo, hi in self.result.outages)
        if not (late and in_outage) or attempts or (ran is not None and ran[tick]):
            lateness = f"{handled - tick:.1f}s" if handled is not None else "?"
            self.violation(
                f"{where}: missed (handled {lateness} late) outside an outage or ran anyway"
                f" (rule 6; outages {[(round(lo), round(hi)) for lo, hi in self.result.outages]})",
                None,
                where.split()[0],
                tick,
            )

    def attempts(
        self,
        where: str,
        job_id: str,
        name: str,
        tick: int,
        retries: int,
        state: str,
        attempts: list[dict[str, Any]],
    ) -> None:
        states = [str(a.get("state")) for a in attempts]
        if len(attempts) > 1:
            self.result.retried[name] += 1
        problem = ""
        if state == "skipped_overlap":
            if any(s != "retrying" for s in states):
                problem = "a skipped run has non-retrying attempts"
        elif not attempts:
            problem = "no attempt recorded"
        elif any(s != "retrying" for s in states[:-1]) or states[-1] != state:
            problem = f"attempt states {states} do not end in {state!r} after retries"
        elif len(attempts) > retries + 1:
            problem = f"{len(attempts)} attempts for {retries} retries"
        elif state in ("failed", "timed_out", "abandoned") and len(attempts) != retries + 1:
            problem = f"final {state!r} after {len(attempts)} attempts of {retries + 1}"
        elif state == "abandoned" and attempts[-1].get("error_type") != ABANDONED:
            problem = "abandoned without an AbandonedJobError attempt"
        if problem:
            self.violation(f"{where}: {problem} (rule 3)", job_id, name, tick)
        for attempt in attempts:
            if attempt.get("error_type") != ABANDONED:
                continue
            if any(t.job_id == job_id and same_start(attempt, t) for t in self.targets):
                continue
            if excuse := self.excuse(name, attempt):
                self.result.lost[excuse] += 1
            else:
                self.violation(
                    f"{where}: abandoned attempt of a run the harness did not kill (rule 4)",
                    job_id,
                    name,
                    tick,
                )

    def excuse(self, name: str, attempt: dict[str, Any]) -> str | None:
        """Why a run that cannot fail by itself failed or was abandoned, when that is legitimate
        (rule 2, rule 4): it was in flight while Redis restarted (its result could not be
        written)."""
        started, ended = epoch(attempt.get("started_at")), epoch(attempt.get("ended_at"))
        timeline = self.timeline
        if timeline.redis_down and started is not None and ended is not None:
            longest = self.timeouts[name] + HARD_KILL_GRACE
            if timeline.redis_down - longest <= started <= timeline.redis_up and ended >= timeline.redis_down:
                return "lost across the Redis restart"
        return None

    def ran(self, where: str, name: str, tick: int, state: str, attempts: int, count: int) -> None:
        if name in EXACTLY_ONCE:
            wrong = (
                count > 1 or (state == "succeeded" and count != 1) or (state == "skipped_overlap" and count)
            )
        else:
            wrong = count > max(attempts, 1) or (state == "succeeded" and count < 1)
        if wrong:
            self.violation(
                f"{where}: {state} but ran {count} times in {attempts} attempts (rule 5)",
                KEYS.run_id(name, tick),
                name,
                tick,
            )
