"""The nightly CLIP inference (issue 15): yesterday's room photographs through a CLIP model.

It runs on its own queue (CLIP_QUEUE) and worker (`python -m jobs.clip_worker`, which loads
the model before its first fork), so a long batch never delays the minute-by-minute jobs.

Every worker imports this module at start (jobs.worker.preload_jobs), so it imports nothing
heavy itself: onnxruntime, numpy, Pillow and tokenizers are imported by the job, in the
heavy worker, where jobs.clip_worker has imported them already.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import current_app
from rq import get_current_job

from app.services.clip_files import ClipModelError
from app.services.jobcontext import current_job_id
from app.services.timewindows import app_zone, previous_day, resolve_tick

logger = logging.getLogger(__name__)

CLIP_QUEUE = "heavy"
VISION_EXTRA = "the vision extra is not installed (pip install -e '.[vision]')"


def daily_clip_inference(scheduled_for: str | None = None) -> dict[str, object]:
    """Embed and label every image of the tick's previous local day not yet inferred by the
    configured model version; a summary of images, inferred, skipped, failed and seconds.

    Without a usable model (or prompts) it fails at once with one line naming the directory
    and what is missing, and is not retried: no retry can bring a model.
    """
    tick = resolve_tick(scheduled_for)
    day = previous_day(tick, app_zone())
    config = current_app.config
    try:
        from app.services import clip_files, clip_inference, clip_model  # the heavy worker's only

        loaded, loaded_now = clip_model.shared_model(
            Path(config["CLIP_MODEL_DIR"]), Path(config["CLIP_PROMPTS_FILE"])
        )
        zero_shot = loaded.model.zero_shot(clip_files.read_prompts(Path(config["CLIP_PROMPTS_FILE"])))
    except ImportError as exc:
        _fail_for_good()
        raise ClipModelError(f"{VISION_EXTRA}: {exc}") from None
    except ClipModelError:
        _fail_for_good()
        raise
    if loaded_now:
        logger.warning(
            "clip model loaded inside the job (%.2fs): start this worker with `python -m jobs.clip_worker` "
            "to load it once per worker",
            loaded.seconds,
        )
    summary = clip_inference.infer_window(
        day, loaded.model, zero_shot, Path(config["ROOM_IMAGE_DIR"]), int(config["CLIP_BATCH_SIZE"])
    )
    assert day.day is not None  # previous_day gives a day window
    result: dict[str, object] = {
        "day": day.day.isoformat(),
        "model": loaded.model.label,
        **summary.as_dict(),
        "model_load_seconds": round(loaded.seconds, 3) if loaded_now else 0.0,
    }
    logger.info(
        "job done job=daily_clip_inference job_id=%s tick=%s day=%s model=%s images=%d inferred=%d "
        "skipped=%d failed=%d seconds=%.2f",
        current_job_id(),
        tick.isoformat(),
        result["day"],
        result["model"],
        summary.images,
        summary.inferred,
        summary.skipped,
        summary.failed,
        summary.seconds,
    )
    return result


def _fail_for_good() -> None:
    """This run fails without its remaining retries: rq decides on the job's in-memory
    `retries_left` when the horse handles the failure, and the run's record then ends
    `failed` (final) with one alert, instead of a retry storm against a missing file."""
    job = get_current_job()
    if job is not None:
        job.retries_left = 0
