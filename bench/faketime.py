"""A process with its host clock shifted: Debian's libfaketime, preloaded.

`FAKETIME="+2s"` shifts what the process reads from the wall clock (and, uniformly, the
monotonic one) by two seconds; sleeps and Redis's own clock are unaffected. `make test`
installs the `faketime` package when it can (as root with apt-get).
"""

from __future__ import annotations

import glob

# Debian/Ubuntu paths of the preload library, most specific first.
LIBRARY_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def library() -> str | None:
    """Path of libfaketime, or None when it is not installed."""
    for pattern in LIBRARY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def skewed_env(offset: str) -> dict[str, str]:
    """Environment that shifts a child's clock by `offset` (e.g. "+2s", "-2s")."""
    path = library()
    if path is None:
        raise FileNotFoundError("libfaketime is not installed (Debian package `faketime`)")
    # NO_CACHE: read the offset once and keep it; DONT_RESET: children keep the same offset.
    return {"LD_PRELOAD": path, "FAKETIME": offset, "FAKETIME_DONT_RESET": "1"}
