"""The schedules the chaos harness declares, and what each of their runs may end in."""

from __future__ import annotations

from cronwork.keys import Keys

QUEUE = "default"
KEYS = Keys("cronwork")
RAN_KEY = "chaos:ran:{}"
ABANDONED = "AbandonedJobError"
FINAL = frozenset(
    {"succeeded", "failed", "timed_out", "abandoned", "skipped_overlap", "missed", "rate_limited"}
)

SCHEDULE = """\
[defaults]
timezone = "UTC"
queue = "default"
retry_backoff = ["1s"]
misfire = "run_latest"
misfire_grace = "10m"
keep_runs = 2000           # the audit reads every tick of the window from the ledger

[schedules.quick_once]     # exactly-once proof: never fails, never retried
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_once" }
every = "2s"
overlap = "allow"
timeout = "10s"

[schedules.quick_skip]
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_skip" }
every = "3s"
overlap = "skip"
timeout = "3s"

[schedules.quick_retry]    # a killed run is retried and legitimately runs again
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_retry" }
every = "4s"
overlap = "allow"
timeout = "10s"
retries = 2

[schedules.sleep_allow]
func = "jobs.diagnostics.sleep"
kwargs = { seconds = 3.0 }
every = "4s"
overlap = "allow"
timeout = "15s"
retries = 1

[schedules.sleep_skip]
func = "jobs.diagnostics.sleep"
kwargs = { seconds = 2.0 }
every = "4s"
overlap = "skip"
timeout = "4s"

[schedules.flaky]
func = "jobs.diagnostics.fail"
kwargs = { message = "chaos: deliberate failure" }
every = "5s"
overlap = "allow"
timeout = "10s"
retries = 2

[schedules.quick_jitter]   # exactly once with a jitter: every replica derives the same delay
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_jitter" }
every = "3s"
jitter = "2s"
overlap = "allow"
timeout = "10s"

[schedules.quick_limited]  # at most 2 runs enqueued in any 7 s, admitted in the push script
func = "jobs.diagnostics.record_run"
kwargs = { key = "chaos:ran:quick_limited" }
every = "2s"
rate_limit = "2/7s"
overlap = "allow"
timeout = "10s"

[schedules.times_out]
func = "jobs.diagnostics.sleep"
kwargs = { seconds = 5.0 }
every = "6s"
overlap = "allow"
timeout = "1s"
"""
# Final states each schedule can reach (plus `missed`, under rule 6).
EXPECTED = {
    "quick_once": {"succeeded", "abandoned"},
    "quick_skip": {"succeeded", "skipped_overlap", "abandoned"},
    "quick_retry": {"succeeded", "abandoned"},
    "sleep_allow": {"succeeded", "abandoned"},
    "sleep_skip": {"succeeded", "skipped_overlap", "abandoned"},
    "quick_jitter": {"succeeded", "abandoned"},
    "quick_limited": {"succeeded", "rate_limited", "abandoned"},
    "flaky": {"failed", "abandoned"},
    "times_out": {"timed_out", "abandoned"},
}
EXACTLY_ONCE = ("quick_once", "quick_skip", "quick_jitter", "quick_limited")
ONCE_PER_ATTEMPT = ("quick_retry",)
STATES = (
    "succeeded",
    "failed",
    "timed_out",
    "abandoned",
    "skipped_overlap",
    "missed",
    "rate_limited",
    "other",
)
