"""`.bench-venv/`: APScheduler 3 in a virtualenv of its own, never in the project's dependencies.

Created on first use with `python -m venv` and pip (the package index only), with the same
redis, rq and hiredis as the project's venv so the push path is the same code; rebuilt when
the pins change (they are written into the venv and compared on every run).
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from app.config import PROJECT_ROOT

APSCHEDULER = "apscheduler==3.11.3"
VENV = PROJECT_ROOT / ".bench-venv"
PINS_FILE = "bench-pins.txt"
INSTALL_TIMEOUT = 600


class BenchVenvError(RuntimeError):
    """The benchmark's own virtualenv could not be made."""


def pins() -> list[str]:
    """Requirements of the APScheduler replicas: same redis/rq/hiredis as this interpreter's."""
    return [APSCHEDULER, *(f"{name}=={version(name)}" for name in ("redis", "rq", "hiredis"))]


def bench_python(venv: Path = VENV) -> Path:
    """The venv's interpreter, made or updated first when its pins differ."""
    python = venv / "bin" / "python"
    wanted = "\n".join(pins()) + "\n"
    stamp = venv / PINS_FILE
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"peers: installing {', '.join(pins())} into {venv} (first use)", flush=True)
    venv.mkdir(parents=True, exist_ok=True)
    log = venv / "install.log"
    with log.open("wb") as out:
        for args in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins()],
        ):
            try:
                code = subprocess.run(
                    args, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
            if code != 0:
                raise BenchVenvError(f"{' '.join(args[:4])} ... failed (exit {code}); see {log}")
    stamp.write_text(wanted)
    return python
