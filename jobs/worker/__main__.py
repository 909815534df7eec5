"""`python -m jobs.worker`: see jobs/worker/cli.py."""

from __future__ import annotations

from jobs.worker.cli import main

raise SystemExit(main())
