"""Where the web's log lines go: INFO and above of the `app` and `cronwork` loggers, to stderr.

gunicorn configures only its own loggers (gunicorn.error, gunicorn.access; neither propagates),
and a logger without a handler falls back to Python's last-resort handler, which prints
WARNING and above: the ops actions and the audit trail's INFO lines (cronwork.audit) never
reached the console (issue 12). The Flask dev server is the same for `cronwork`, and its
default handler on `app` sits behind the root's WARNING level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # as scheduler_boot's
INFO_LOGGERS = ("app", "cronwork")


def log_to_stderr() -> None:
    """One stderr handler on the root logger and INFO for our loggers, unless the process set
    up logging already (gunicorn --log-config, the worker, pytest): then nothing changes, so no
    line is printed twice. Other libraries keep the root's level (WARNING)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    for name in INFO_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


@contextmanager
def quiet_for_commands() -> Iterator[None]:
    """While a `flask` command runs: it prints its own result in a line, and our INFO lines would
    repeat it (the audit trail still records the action in Redis). Warnings and errors show."""
    loggers = [logging.getLogger(name) for name in INFO_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
