"""`python -m scheduler_boot`: validate the schedule, reconcile it with Redis, run the loop.

--check       validate only (exit 0, or 2 with one line per problem)
--next N      print the next N fire times of every enabled schedule, in its zone
--dry-run     print the reconcile plan, write nothing
--sync-only   reconcile and exit
(no flag)     reconcile, then run the scheduler loop

A sync never touches runtime schedules (added through the API, the CLI or the ops pages);
a declared name that one of them holds is reported as a clash ("! name: ...").
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime

from cronwork.connection import ServiceUnavailable, redis_from_settings, wait_for_redis
from cronwork.keys import Keys
from cronwork.loader import expired_message, load_schedule
from cronwork.settings import CronworkSettings, SettingsError
from cronwork.spec import Schedule, ScheduleError
from cronwork.timing import fire_times
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan, compute_plan

log = logging.getLogger("scheduler_boot")

EXIT_BAD_SCHEDULE = 2
EXIT_BAD_SETTINGS = 2
EXIT_UNAVAILABLE = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler_boot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="validate the schedule file only")
    mode.add_argument("--next", type=int, metavar="N", help="print the next N fire times")
    mode.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    mode.add_argument("--sync-only", action="store_true", help="reconcile and exit")
    parser.add_argument(
        "--file", help="schedule file (default: SCHEDULE_FILE or scheduler_boot/schedule.toml)"
    )
    parser.add_argument("--burst", action="store_true", help="run one scheduler pass, then exit")
    return parser.parse_args(argv)


def print_next(schedule: Schedule, count: int, now: datetime) -> None:
    """`name<TAB>ISO-8601 with offset` lines, in each schedule's own zone."""
    for name, spec in schedule.enabled.items():
        for instant in fire_times(spec.trigger, spec.zone, now, count):
            sys.stdout.write(f"{name}\t{instant.astimezone(spec.zone).isoformat()}\n")


def check(schedule: Schedule, now: datetime) -> int:
    """--check: the file is valid; an enabled one-off already past is reported (exit 2).

    Offline, --check cannot know whether the scheduler ran it: it says so and how to clean
    up, while a sync treats it as `expired` and starts normally.
    """
    expired = schedule.expired(now)
    for name in expired:
        sys.stderr.write(expired_message(schedule.path, schedule.specs[name]) + "\n")
    if expired:
        return EXIT_BAD_SCHEDULE
    enabled = len(schedule.enabled)
    sys.stdout.write(f"{schedule.path}: ok, {len(schedule.specs)} schedules ({enabled} enabled)\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Needs Redis only: no Flask app, no database (issue 10: a database outage must not
    stop schedules from firing)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = CronworkSettings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"scheduler_boot: {exc}\n")
        return EXIT_BAD_SETTINGS
    try:
        schedule = load_schedule(args.file or settings.schedule_file)
    except ScheduleError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_BAD_SCHEDULE
    now = datetime.now(UTC)
    if args.check:
        return check(schedule, now)
    if args.next is not None:
        print_next(schedule, args.next, now)
        return 0

    try:
        wait_for_redis(settings)
    except ServiceUnavailable as exc:
        sys.stderr.write(f"scheduler_boot: {exc}\n")
        return EXIT_UNAVAILABLE
    connection = redis_from_settings(settings)
    keys = Keys(settings.prefix)
    if args.dry_run:
        sys.stdout.write(compute_plan(connection, schedule.specs, keys, now).render() + "\n")
        return 0
    plan = apply_plan(connection, schedule.specs, keys, now)
    sys.stdout.write(plan.render() + "\n")
    sys.stdout.flush()
    if args.sync_only:
        return 0
    scheduler = CronworkScheduler(connection, keys)
    active = len(plan.added) + len(plan.updated) + len(plan.unchanged) + len(plan.runtime)
    log.info("scheduler name=%s started, %d schedules", scheduler.name, active)
    scheduler.run(burst=args.burst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
