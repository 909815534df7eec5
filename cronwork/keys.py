"""Names of every Redis key and RQ job id Cronwork owns, derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass

# rq-scheduler's sorted set of scheduled jobs (score = next fire time, epoch seconds).
RQ_SCHEDULER_SET = "rq:scheduler:scheduled_jobs"
# Where RQ keeps a job's hash (rq.job.Job.key_for); templates are RQ jobs too.
RQ_JOB_PREFIX = "rq:job:"
# Seconds an occurrence claim lives: well above any misfire grace.
CLAIM_TTL = 2 * 24 * 3600


def job_key(job_id: str) -> str:
    """The Redis hash of an RQ job (the same name rq.job.Job.key_for gives)."""
    return f"{RQ_JOB_PREFIX}{job_id}"


@dataclass(frozen=True)
class Keys:
    """Key and id names under one configurable prefix."""

    prefix: str = "cronwork"

    def template_id(self, name: str) -> str:
        """RQ job id of a schedule's template in rq-scheduler's set (letters, digits, -, _)."""
        return f"{self.prefix}-{name}"

    def run_id(self, name: str, tick_epoch: int) -> str:
        """RQ job id of one occurrence: deterministic, so a duplicate enqueue is detectable."""
        return f"{self.prefix}-{name}-{tick_epoch}"

    def name_from_template_id(self, job_id: str) -> str | None:
        """The schedule name of a template id, or None for a foreign job."""
        head = f"{self.prefix}-"
        return job_id[len(head) :] if job_id.startswith(head) else None

    @property
    def definitions(self) -> str:
        """Hash: schedule name → JSON {hash, spec} of every registered template."""
        return f"{self.prefix}:definitions"

    def template_key(self, name: str) -> str:
        """The RQ job hash of a schedule's template."""
        return job_key(self.template_id(name))

    @property
    def sync_lock(self) -> str:
        return f"{self.prefix}:sync_lock"

    @property
    def scheduler_lock(self) -> str:
        """Owner token of the replica that runs housekeeping (foreign scheduled jobs); the
        occurrences of Cronwork's schedules need no lock (cronwork.dispatch)."""
        return f"{self.prefix}:scheduler_lock"

    @property
    def scheduler_heartbeat(self) -> str:
        """Hash: scheduler name → epoch of its last completed loop pass."""
        return f"{self.prefix}:scheduler:heartbeat"

    @property
    def scheduler_clock_offset(self) -> str:
        """Hash: scheduler name → its host clock's offset to Redis's (Redis minus host, s)."""
        return f"{self.prefix}:scheduler:clock_offset"

    @property
    def oneoffs_fired(self) -> str:
        """Hash: schedule name → epoch of the one-off tick the scheduler handled. Kept for good:
        it is what lets a restart accept the file's `at` in the past as done, not a mistake."""
        return f"{self.prefix}:oneoffs_fired"

    @property
    def paused(self) -> str:
        """Hash: schedule name → JSON {reason, since}; written by operators, kept by syncs."""
        return f"{self.prefix}:paused"

    def claim(self, name: str, tick_epoch: int) -> str:
        """A manual run's claim of second `tick_epoch` (scheduled ticks are fenced by
        `last_tick` instead, which costs no key per run)."""
        return f"{self.claim_prefix(name)}{tick_epoch}"

    def claim_prefix(self, name: str) -> str:
        return f"{self.prefix}:claim:{name}:"

    @property
    def last_tick(self) -> str:
        """Hash: schedule name → the newest tick (epoch) a scheduler handled. A tick at or
        before it is never handled again, whatever a stale plan or a re-sync says."""
        return f"{self.prefix}:last_tick"

    def ledger(self, name: str) -> str:
        """Sorted set of one schedule's tick records (score = tick epoch)."""
        return f"{self.prefix}:ledger:{name}"

    def run_record(self, name: str, tick_epoch: int) -> str:
        """Hash: the ledger record of one occurrence."""
        return f"{self.run_record_prefix(name)}{tick_epoch}"

    def run_record_prefix(self, name: str) -> str:
        return f"{self.prefix}:run:{name}:"

    def attempts(self, name: str, tick_epoch: int) -> str:
        """List: one JSON entry per attempt of one occurrence."""
        return f"{self.attempts_prefix(name)}{tick_epoch}"

    def attempts_prefix(self, name: str) -> str:
        return f"{self.prefix}:attempts:{name}:"

    @property
    def run_stats(self) -> str:
        """Hash of per-schedule figures kept as runs end (cronwork.stats decodes it):
        `<name>:runs:<state>` counts, `<name>:lag`, `<name>:start_latency`, `<name>:duration`,
        `<name>:success_at`, `<name>:trimmed_through`."""
        return f"{self.prefix}:run_stats"

    def overlap_lock(self, name: str) -> str:
        """Held by the running attempt of a schedule whose overlap policy is not `allow`
        (value = its token)."""
        return f"{self.prefix}:overlap:{name}"

    def overlap_waiter(self, name: str) -> str:
        """Held by the one run of a `buffer_one` or `cancel_other` schedule that waits for the
        overlap lock (value = its token). Short-lived and renewed while it waits, so a dead
        waiter frees it within cronwork.runs.WAITER_TTL."""
        return f"{self.prefix}:overlap_waiter:{name}"

    def failure_streak(self, name: str) -> str:
        """Consecutive final failures of a schedule; deleted by a success."""
        return f"{self.prefix}:failures:{name}"

    def alerted(self, name: str) -> str:
        """Set once admins were told of the current failure streak."""
        return f"{self.prefix}:alerted:{name}"

    def daily_report_sent(self, label: str) -> str:
        """Set once the daily report of day `label` went out (the job may run twice)."""
        return f"{self.prefix}:daily_report_sent:{label}"

    @property
    def pending_alerts(self) -> str:
        """List of alerts that could not be written (database down), delivered later."""
        return f"{self.prefix}:pending_alerts"

    @property
    def audit(self) -> str:
        """List of every operator action, newest first, JSON (cronwork.audit); capped."""
        return f"{self.prefix}:audit"

    def audit_of(self, name: str) -> str:
        """List of the operator actions on one schedule, newest first (cronwork.audit); capped,
        expires when no action touched it for a while (a refused action may name anything)."""
        return f"{self.prefix}:audit:schedule:{name}"

    def ops_session(self, session_id: str) -> str:
        """Hash: one ops login (user, credentials proof, start); deleted by logout, expires when
        idle (app.ops.sessions). The cookie carries only the id."""
        return f"{self.prefix}:ops_session:{session_id}"

    @property
    def auth_failures(self) -> str:
        """Hash: scheme (form, basic, bearer) → wrong credentials seen (cronwork.auth_failures)."""
        return f"{self.prefix}:auth:failures"

    @property
    def auth_lockouts(self) -> str:
        """Hash: scope (client, account) → lockouts begun (cronwork.auth_failures)."""
        return f"{self.prefix}:auth:lockouts"

    def auth_lockout(self, scope: str, subject: str) -> str:
        """Set while one client or account is locked out, so a lockout is counted once;
        `subject` is a digest (account names are whatever a guesser sent)."""
        return f"{self.prefix}:auth:lockout:{scope}:{subject}"

    @property
    def rate_limits(self) -> str:
        """Prefix of Flask-Limiter's moving windows of failed logins (app.ops.limits)."""
        return f"{self.prefix}:ratelimit"

    def schedule_rate(self, name: str) -> str:
        """The runs of a schedule with a `rate_limit` admitted in its window: a sorted set of run
        job ids scored by admission time (cronwork.ratelimit)."""
        return f"{self.prefix}:schedule_rate:{name}"
