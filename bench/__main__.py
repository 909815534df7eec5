"""`python -m bench [peers|scale|burst|memory|clip ...]`: run benchmarks, print figures and ratios."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench import chaos, clip, domain, memory, ops, peers, scale, scheduling, worker

BENCHMARKS: dict[str, Callable[[], None]] = {
    "peers": peers.run,
    "scale": scale.run,
    "burst": scheduling.burst,
    "reconcile": scheduling.reconcile,
    "worker": worker.run,
    "domain": domain.run,
    "chaos": chaos.run,
    "ops": ops.run,
    "memory": memory.run,
    "clip": clip.run,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    for name in names:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
