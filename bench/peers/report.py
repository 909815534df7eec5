"""The peer tables (markdown), Cronwork's targets beside them, and the analytic default-interval row."""

from __future__ import annotations

from dataclasses import dataclass

from bench.peers.analysis import Gap, SkewCount
from bench.peers.runner import SKEWED, Outcome, SkewOutcome

TARGET_P99 = 0.010
TARGET_GAP = 1.1
OURS = "cronwork"
HEADER = (
    "| system | every-second ticks | pushes | duplicates | missed | tick → push p50 | p99 "
    "| tick → start p50 | p99 | gap after kill | every-minute ticks (dup, lateness) | killed |"
)
DEFAULT_INTERVAL_NOTE = (
    "rq-scheduler 0.14 with its default interval (-i 60), analytic, not run: each replica polls "
    "every 60 s and pushes the every-second job once per poll (about 1-2 of 60 ticks, each ~59 s "
    "late, which the floor rule cannot attribute); every-minute ticks wait for the next poll "
    "(p50 30 s, p99 59.4 s late with replicas polling in phase); after a SIGKILL the survivor's "
    "next poll is up to 60 s away, 70 s if the killed one held the lock (its TTL is interval + 10 s)."
)


@dataclass(frozen=True)
class Failure:
    """A system that could not be measured, and why."""

    key: str
    label: str
    error: str


def ms(value: float | None) -> str:
    """Milliseconds with one decimal below 100 ms, or a dash."""
    if value is None:
        return "—"
    millis = value * 1000
    return f"{millis:.1f} ms" if abs(millis) < 100 else f"{millis:.0f} ms"


def gap_text(gap: Gap | None) -> str:
    if gap is None:
        return "—"
    return f"{'≥ ' if gap.open_ended else ''}{gap.seconds:.2f} s"


def row(outcome: Outcome) -> str:
    """One table row."""
    second, minute = outcome.second, outcome.minute
    push = outcome.push or (None, None)
    start = outcome.start or (None, None)
    minute_late = ", ".join(ms(v) for v in outcome.minute_lateness) or "—"
    cells = [
        outcome.system.label,
        f"{second.pushed}/{second.expected}",
        str(second.pushes),
        str(second.duplicates),
        str(second.missed),
        ms(push[0]),
        ms(push[1]),
        ms(start[0]),
        ms(start[1]),
        gap_text(outcome.gap),
        f"{minute.pushed}/{minute.expected} ({minute.duplicates}, {minute_late})",
        outcome.killed,
    ]
    return "| " + " | ".join(cells) + " |"


def targets(outcomes: list[Outcome]) -> str | None:
    """Cronwork's figures against its targets; None when Cronwork was not run."""
    ours = next((o for o in outcomes if o.system.key == OURS), None)
    if ours is None:
        return None
    peers = [o for o in outcomes if o.system.key != OURS and o.push is not None]
    checks = [
        (f"duplicates {ours.second.duplicates} = 0", ours.second.duplicates == 0),
        (f"missed {ours.second.missed} = 0", ours.second.missed == 0),
    ]
    p50, p99 = ours.push or (None, None)
    if peers:
        best = min(peers, key=lambda o: o.push[0] if o.push else float("inf"))
        best_p50 = best.push[0] if best.push else None
        ok = p50 is not None and best_p50 is not None and p50 <= best_p50
        checks.append((f"p50 {ms(p50)} ≤ best peer's {ms(best_p50)} ({best.system.label})", ok))
    checks.append((f"p99 {ms(p99)} ≤ {ms(TARGET_P99)}", p99 is not None and p99 <= TARGET_P99))
    gap_ok = ours.gap is not None and not ours.gap.open_ended and ours.gap.seconds <= TARGET_GAP
    checks.append((f"gap {gap_text(ours.gap)} ≤ {TARGET_GAP} s", gap_ok))
    return "Cronwork targets: " + "; ".join(f"{text} {'ok' if ok else 'MISSED'}" for text, ok in checks)


def render(outcomes: list[Outcome], failures: list[Failure], seconds: int) -> list[str]:
    """The whole report as lines."""
    lines = [
        f"\n== peers: {seconds} s of every-second ticks per system, two replicas each, "
        "the latest pusher SIGKILLed midway (lateness at the push in Redis, MONITOR clock)",
        HEADER,
        "|" + "---|" * HEADER.count(" | ") + "---|",
        *(row(o) for o in outcomes),
        *(f"| {f.label} | failed: {f.error} |" for f in failures),
        "",
        DEFAULT_INTERVAL_NOTE,
    ]
    if (text := targets(outcomes)) is not None:
        lines.append(text)
    return lines


SKEW_HEADER = (
    "| system | every-second ticks | pushes | early pushes (earliest) | duplicates | missed "
    "| tick → push p50 | p99 | pushes by replica | every-minute ticks (early, dup) | tick read from |"
)


def early_text(count: SkewCount) -> str:
    return f"{count.early} ({ms(count.earliest)})" if count.early else "0"


def attribution_text(outcome: SkewOutcome) -> str:
    """Where the tick came from, and the pushes it could not come from (flagged)."""
    notes = []
    flagged = outcome.second.flagged + outcome.minute.flagged
    if flagged:
        notes.append(f"{flagged} pushes unexplained: nearest tick, FLAGGED")
    stray = outcome.second.stray + outcome.minute.stray
    if stray:
        notes.append(f"{stray} pushes meant for no tick of the schedule")
    return outcome.attribution + (f" ({'; '.join(notes)})" if notes else "")


def skew_row(outcome: SkewOutcome) -> str:
    """One row of the skew table."""
    second, minute = outcome.second, outcome.minute
    p50, p99 = second.lateness or (None, None)
    replicas = ", ".join(
        f"{name}{f' ({outcome.offset})' if name == SKEWED else ''} {n}"
        for name, n in outcome.by_replica.items()
    )
    cells = [
        outcome.system.label,
        f"{second.pushed}/{second.expected}",
        str(second.pushes),
        early_text(second),
        str(second.duplicates),
        str(second.missed),
        ms(p50),
        ms(p99),
        replicas or "—",
        f"{minute.pushed}/{minute.expected} ({minute.early}, {minute.duplicates})",
        attribution_text(outcome),
    ]
    return "| " + " | ".join(cells) + " |"


def skew_targets(outcomes: list[SkewOutcome]) -> str | None:
    """Cronwork's skew figures against its targets; None when Cronwork was not run."""
    ours = next((o for o in outcomes if o.system.key == OURS), None)
    if ours is None:
        return None
    both = (ours.second, ours.minute)  # every-second and every-minute ticks together
    early, duplicates = sum(c.early for c in both), sum(c.duplicates for c in both)
    missed, flagged = sum(c.missed for c in both), sum(c.flagged for c in both)
    checks = [
        (f"early pushes {early} = 0", early == 0),
        (f"duplicates {duplicates} = 0", duplicates == 0),
        (f"missed {missed} = 0", missed == 0),
        (f"unexplained pushes {flagged} = 0", flagged == 0),
    ]
    return "Cronwork skew targets: " + "; ".join(f"{text} {'ok' if ok else 'MISSED'}" for text, ok in checks)


def render_skew(outcomes: list[SkewOutcome], failures: list[Failure], seconds: int, offset: str) -> list[str]:
    """The skew scenario's report as lines."""
    lines = [
        f"\n== peers, clock skew: {seconds} s of every-second ticks per system, two replicas each, "
        f"{SKEWED}'s host clock shifted {offset} (libfaketime), no kill; each push attributed to the "
        "tick the system meant it for, early/late by Redis's clock (MONITOR)",
        SKEW_HEADER,
        "|" + "---|" * SKEW_HEADER.count(" | ") + "---|",
        *(skew_row(o) for o in outcomes),
        *(f"| {f.label} | failed: {f.error} |" for f in failures),
    ]
    if (text := skew_targets(outcomes)) is not None:
        lines.append(text)
    return lines
