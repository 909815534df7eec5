"""When things happened during a run, and which ticks its chaos window holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from cronwork.spec import Schedule


@dataclass
class Timeline:
    """When things happened (epoch seconds)."""

    chaos_start: float = 0.0
    chaos_end: float = 0.0
    redis_down: float = 0.0
    redis_up: float = 0.0
    settle: float = 0.0
    settled: bool = False
    hostile: list[float] = field(default_factory=list)  # when hostile entries were planted


def parse_time(text: str | None) -> datetime | None:
    """A ledger or rq timestamp (ISO 8601, UTC) as an aware datetime; None when absent."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=UTC)


def epoch(text: str | None) -> float | None:
    """The same timestamp in epoch seconds."""
    moment = parse_time(text)
    return moment.timestamp() if moment else None


def window_ticks(schedule: Schedule, timeline: Timeline) -> dict[str, list[int]]:
    """Every tick of every schedule from the start to the end of chaos."""
    out: dict[str, list[int]] = {}
    start = datetime.fromtimestamp(timeline.chaos_start - 0.001, UTC)
    for name, spec in schedule.enabled.items():
        ticks: list[int] = []
        tick = spec.next_fire(start)
        while tick is not None and tick.timestamp() <= timeline.chaos_end:
            ticks.append(int(tick.timestamp()))
            tick = spec.next_fire(tick)
        out[name] = ticks
    return out
