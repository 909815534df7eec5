"""`python -m jobs.clip_worker heavy [--burst] [--name] [--shutdown-grace]`: the heavy worker.

The same worker as `python -m jobs.worker` (same arguments, passed on unchanged), with the CLIP
model loaded first, in this main process, before rq forks any work horse: every horse inherits
the loaded sessions, tokenizer and prompt embeddings (app.services.clip_model), so the model is
loaded once per worker, not once per job.

Without a usable model the worker still starts (a crash loop would help no one): it logs the
one-line reason, and the CLIP job fails with that same line, without retries, until the model
is there and the worker restarted. Every worker imports this module (preload_jobs): it only
defines functions.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from app.config import settings_from_env
from app.services.clip_files import ClipModelError
from cronwork.settings import SettingsError
from jobs.vision import VISION_EXTRA
from jobs.worker.cli import main as worker_main
from jobs.worker.logcontext import configure_logging

log = logging.getLogger("jobs.clip_worker")


def preload_model() -> bool:
    """Load the configured model into this process; False (logged, one line) when it cannot."""
    try:
        config = settings_from_env()
    except SettingsError:
        return False  # jobs.worker reports a bad setting in its own words, and exits
    try:
        # onnxruntime, numpy, Pillow, tokenizers, and the job's own service: the horses then
        # import nothing.
        import app.services.clip_inference  # noqa: F401
        from app.services.clip_model import preload
    except ImportError as exc:
        log.warning("clip model not loaded: %s: %s", VISION_EXTRA, exc)
        return False
    try:
        preload(Path(config["CLIP_MODEL_DIR"]), Path(config["CLIP_PROMPTS_FILE"]))
    except ClipModelError as exc:
        log.warning("clip model not loaded: %s (the CLIP job fails with this until it is there)", exc)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    preload_model()
    return worker_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
