"""The chaos harness (issue 7), short: 30 s of SIGKILLs (some of a worker's main pid alone), a
Redis restart, hostile entries written straight into Redis and a scheduler whose clock runs
1.5 s fast, no violation (`make chaos` runs 5 minutes)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from app.config import PROJECT_ROOT
from bench import faketime

pytestmark = pytest.mark.slow

CHAOS_SECONDS = 30
# Warm-up (≤ 90 s) + chaos + drain (≤ 30 s) + settle (≤ 120 s) + stops: the harness is bounded.
HARD_LIMIT = CHAOS_SECONDS + 360


def test_a_minute_of_chaos_breaks_no_rule() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.chaos", "--seconds", str(CHAOS_SECONDS)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=HARD_LIMIT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the harness stops and removes everything it started
        output, _ = proc.communicate(timeout=60)
        pytest.fail(f"chaos harness still running after {HARD_LIMIT}s:\n{output}")
    assert proc.returncode == 0, output
    assert "violations: 0" in output
    assert "hostile entries planted: 24 (2 times" in output  # rule 10 had something to check
    if faketime.library() is not None:
        assert "scheduler 2 ran with its clock +1.5s" in output  # rule 11 had something to check
