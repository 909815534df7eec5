"""Process-tree plumbing from /proc: descendants, signals that tolerate the dead, orphan reaping."""

from __future__ import annotations

import ctypes
import os
from collections import defaultdict
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _children_map() -> dict[int, list[int]]:
    """ppid → child pids of every process, from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (work horses, rq's scheduler child)."""
    children = _children_map()
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs: it exists and is not a zombie waiting for its reaper (us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def send_signal(pid: int, signum: int) -> None:
    """Send `signum` to `pid`, unless it is gone already."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def become_subreaper() -> None:
    """Adopt orphans: a horse whose worker crashed stays findable, and killable, below us."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_orphans(known: set[int]) -> None:
    """Collect adopted orphans that exited (Popen reaps the processes it started itself)."""
    for pid in _children_map().get(os.getpid(), []):
        if pid not in known:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
