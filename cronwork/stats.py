"""Per-schedule figures kept as runs end, for /metrics and reports: read in one command.

Written only inside the run-transition scripts (cronwork.dispatch: `missed`, `paused`, `lag`,
`trimmed_through`; cronwork.runs START: `start_latency` of a scheduled run's first attempt;
FINISH: the count of each final state, `duration`, `success_at`), into one hash
(Keys.run_stats, fields `<name>:<figure>`). So a scrape reads the same few bytes per
schedule whatever the history keeps, and a counter never goes back when the history is
trimmed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from redis import Redis

from cronwork.keys import Keys
from cronwork.runs import RunState

_FLOATS = {"lag", "start_latency", "duration", "success_at"}


@dataclass
class RunStats:
    """One schedule's figures (None: nothing of that kind happened yet)."""

    runs: dict[RunState, int] = field(default_factory=dict)  # runs ended in each final state
    lag: float | None = None  # push minus tick of the newest scheduled run, s
    start_latency: float | None = None  # first start minus tick of the newest scheduled run, s
    duration: float | None = None  # of the newest run that ended (succeeded or failed), s
    success_at: float | None = None  # end of the newest successful run, epoch s
    trimmed_through: int | None = None  # newest tick dropped from the kept history


def run_stats(connection: Redis, keys: Keys, names: Iterable[str] | None = None) -> dict[str, RunStats]:
    """Figures of `names` (default: every schedule with any); unreadable values are skipped."""
    raw = cast(dict[bytes, bytes], connection.hgetall(keys.run_stats))
    wanted = set(names) if names is not None else None
    out: dict[str, RunStats] = defaultdict(RunStats)
    for raw_field, raw_value in raw.items():
        name, _, figure = raw_field.decode(errors="replace").partition(":")
        if wanted is not None and name not in wanted:
            continue
        stats = out[name]
        try:
            if figure.startswith("runs:"):
                stats.runs[RunState(figure.removeprefix("runs:"))] = int(raw_value)
            elif figure in _FLOATS:
                setattr(stats, figure, float(raw_value))
            elif figure == "trimmed_through":
                stats.trimmed_through = int(float(raw_value))
        except ValueError:
            continue  # a value written by hand, or a state this version does not know
    if wanted is not None:
        for name in wanted:
            out[name]  # noqa: B018  (every asked-for schedule gets an entry)
    return dict(out)


def trimmed_through(connection: Redis, keys: Keys, name: str) -> int | None:
    """The newest tick of `name` dropped from its kept history, if any was."""
    raw = cast(bytes | None, connection.hget(keys.run_stats, f"{name}:trimmed_through"))
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None
