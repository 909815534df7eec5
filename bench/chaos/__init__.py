"""Chaos harness (issue 7): SIGKILL schedulers and workers, restart Redis, then audit every tick.

    python -m bench.chaos [--seconds N] [--seed S] [--keep]
    python -m bench chaos                  (CHAOS_SECONDS, default 300)

Loopback only: its own redis-server (AOF) on a free 127.0.0.1 port, a SQLite file made by
`flask db upgrade`, 2 schedulers (the second with its host clock 1.5 s fast through
libfaketime when it is installed) and 3 workers, all in a temporary folder removed at the end
(also on Ctrl-C or SIGTERM); after a violation, or with `--keep`, the folder (logs, AOF) is
kept and its path printed.

Phases: warm-up (every process up, first runs done) → chaos for N seconds: every 3–6 s one
random scheduler or worker is SIGKILLed (a worker together with its work horse and its rq
scheduler child, found in /proc; or, half the time, its main pid alone) and restarted at once;
Redis is stopped cleanly and started again on the same port once, mid-way; twice (at 10–30 %
and 70–90 % of the window) hostile entries are written straight into Redis, as in the pickle
incident: pickled jobs whose args or meta run a shell command when unpickled, garbage bytes and
a meta that is a JSON list, in the queue, its failed registry and rq-scheduler's set → drain: kills stop, the schedulers keep going until every
template is past the end of the window, then stop → settle: the workers finish the queue and
find abandoned runs (heartbeat TTL + maintenance, SETTLE_MAX at most) → audit.

Rules, for every tick t of every schedule with chaos start ≤ t ≤ chaos end (see audit.py):
 1. the ledger has a record, naming the run's job, and its state is final: succeeded, failed,
    timed_out, abandoned, skipped_overlap, missed or rate_limited (never running, enqueued,
    retrying, paused);
 2. the state is one the schedule can reach (EXPECTED): a sleep never fails, `fail` never
    succeeds, the 1 s timeout always times out. Excused (counted, not violations): `failed`
    for a run in flight while Redis was down (its result could not be written). A run a killed
    worker dequeued but never started is requeued (60–120 s later) and must end like any other;
 3. attempts (oldest first): all but the last are `retrying`, the last one's state is the
    record's, at most retries + 1 of them, exactly retries + 1 when the run ended failed,
    timed_out or abandoned; none for missed; only `retrying` ones for skipped_overlap;
 4. every AbandonedJobError attempt is a run the harness killed (same job, same start) or one
    in flight while Redis was down (excused); every run the harness killed mid-job (a job in
    the StartedJobRegistry under the killed worker's name, read while the worker and its
    children were SIGSTOPped) has such an attempt and then a retry or a final state. A kill
    the ledger dates after the job's end raced it and is only counted;
 5. record_run lists: quick_once and quick_skip (no retries) hold each tick at most once in
    the whole list, exactly once when succeeded, never when skipped or missed; quick_retry
    holds a tick at most once per attempt, at least once when succeeded;
 6. `missed` only for a tick that fell in an outage (Redis down, or no started scheduler
    alive; from MISS_SLACK s before it to its end) and was handled more than 10 s late
    (misfire.ON_TIME_TOLERANCE): what the misfire policy prescribes, nothing else;
 7. at the end nothing is stuck: the queue, its intermediate list, the StartedJobRegistry
    and the ScheduledJobRegistry are empty, no overlap lock is held, and no rq maintenance
    lock was left behind by a killed worker;
 8. no process exits unless the harness stopped it (a crashed one is restarted, like a
    supervisor would, and the runs it held are followed like killed ones);
 9. a worker SIGKILLed alone takes its children with it: none still runs ORPHAN_GRACE (5 s)
    later (a horse outliving its worker runs on while its run is retried);
10. no planted payload ever ran (its marker file never appears), planted queue entries end
    refused as failed (never run), planted failed ones stay failed (never requeued), planted
    scheduled ones stay in rq-scheduler's set, parked (not due, not enqueued, not deleted);
    no process exited over them (rule 8);
11. no run was pushed before its tick by Redis's clock (its record's `lag` is never
    negative), whichever replica pushed it, the skewed one included;
12. quick_jitter (`jitter = "2s"`): every pushed run's `jitter` is the one (schedule, tick)
    derives, whichever replica pushed it, and it was pushed after tick + jitter;
13. quick_limited (`rate_limit = "2/7s"`): never 3 runs enqueued within 7 s (push times,
    Redis's clock, across replica kills and the Redis restart); a `rate_limited` tick never ran.
Any violation is printed with its evidence and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from bench.chaos.phases import DEFAULT_SECONDS, Options
from bench.chaos.session import Interrupted, chaos


def run() -> None:
    """`python -m bench chaos`: CHAOS_SECONDS (default 300); exits 1 on any violation."""
    raise SystemExit(main(["--seconds", os.environ.get("CHAOS_SECONDS", str(DEFAULT_SECONDS))]))


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status: 1 on any violation, 130 when interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="chaos duration")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, AOF)")
    parser.add_argument(
        "--no-redis-restart", action="store_true", help="only kill processes (to tell faults apart)"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    try:
        violations = chaos(Options(args.seconds, seed, args.keep, not args.no_redis_restart))
    except (KeyboardInterrupt, Interrupted):
        print("chaos: interrupted, everything stopped and removed", file=sys.stderr)
        return 130
    return 1 if violations else 0
