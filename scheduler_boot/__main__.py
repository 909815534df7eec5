"""`python -m scheduler_boot`: validate the schedule, reconcile it with Redis, run the loop.

--check       validate only (exit 0, or 2 with one line per problem)
--next N      print the next N fire times of every enabled schedule, in its zone
--dry-run     print the reconcile plan, write nothing
--sync-only   reconcile and exit
(no flag)     reconcile, then run the scheduler loop
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime

from app import create_app
from app.extensions import redis_from_config
from app.readiness import ServiceUnavailable, wait_for_services
from cronwork.keys import Keys
from cronwork.spec import Schedule, ScheduleError, load_schedule
from cronwork.store import fired_oneoffs
from cronwork.timing import fire_times
from scheduler_boot.scheduler import CronworkScheduler
from scheduler_boot.sync import apply_plan, compute_plan

log = logging.getLogger("scheduler_boot")

EXIT_BAD_SCHEDULE = 2
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app()
    path = args.file or app.config["SCHEDULE_FILE"]
    now = datetime.now(UTC)
    past_oneoffs = False
    try:
        schedule = load_schedule(path, now)
    except ScheduleError as exc:
        # Offline checks stay strict; the scheduler asks Redis whether it ran those one-offs.
        if args.check or args.next is not None or not exc.only_past_oneoffs:
            sys.stderr.write(f"{exc}\n")
            return EXIT_BAD_SCHEDULE
        past_oneoffs = True
    if args.check:
        sys.stdout.write(f"{path}: ok, {len(schedule.specs)} schedules ({len(schedule.enabled)} enabled)\n")
        return 0
    if args.next is not None:
        print_next(schedule, args.next, now)
        return 0

    try:
        wait_for_services(app)
    except ServiceUnavailable as exc:
        sys.stderr.write(f"scheduler_boot: {exc}\n")
        return EXIT_UNAVAILABLE
    connection = redis_from_config(app.config)
    keys = Keys(app.config["CRONWORK_PREFIX"])
    if past_oneoffs:
        try:
            schedule = load_schedule(path, now, fired_oneoffs(connection, keys))
        except ScheduleError as exc:
            sys.stderr.write(f"{exc}\n")
            return EXIT_BAD_SCHEDULE
    if args.dry_run:
        sys.stdout.write(compute_plan(connection, schedule.specs, keys, now).render() + "\n")
        return 0
    plan = apply_plan(connection, schedule.specs, keys, now)
    sys.stdout.write(plan.render() + "\n")
    sys.stdout.flush()
    if args.sync_only:
        return 0
    scheduler = CronworkScheduler(connection, keys)
    log.info("scheduler name=%s started, %d schedules", scheduler.name, len(schedule.enabled))
    scheduler.run(burst=args.burst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
