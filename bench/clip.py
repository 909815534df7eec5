"""`python -m bench clip`: the nightly CLIP job's throughput on the tiny model, and its cost
per image around the model, so a real model's run time can be predicted (issue 15).

The real job (jobs.vision.daily_clip_inference) runs in this process on a SQLite file, over N
camera-sized JPEG photographs (640 x 480, noise: no easy compression) of one local day, with
the tiny CLIP-shaped model of the tests (bench/tiny_clip.py) at the real CLIP input size
(224 x 224). Printed: the model's load time, images per second, and per image the time spent
decoding (open, resize, crop, normalise), in the model, and storing (INSERT + commit), then a
second run of the same day (everything skipped). A real model's nightly run then takes about

    load + images x (decode + store + its own inference time per image)

where its inference time per image is what onnxruntime takes for it on one thread (the job's
sessions use one, see app/services/clip_model.py). No network: no Redis either (the job
touches none), only files under a temporary directory. BENCH_CLIP_IMAGES (default 512) and
BENCH_CLIP_BATCH (default 16) change the size; the whole run takes a few seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from app import create_app
from app.extensions import db
from app.models import Room, RoomImage
from app.services import clip_model
from app.services.clip_files import read_prompts
from app.services.clip_model import ClipModel
from bench.tiny_clip import build_model_dir, write_prompts
from jobs import vision

CLIP_IMAGE_SIZE = 224
PHOTO_SIZE = (640, 480)
ROOMS = 4
# 03:02:25 in Asia/Shanghai on 2026-01-06: the run covers the local day 2026-01-05.
TICK = datetime(2026, 1, 5, 19, 2, 25, tzinfo=UTC)
DAY_START = datetime(2026, 1, 4, 16, 0, tzinfo=UTC)


def write_photographs(root: Path, n: int) -> list[dict[str, object]]:
    """`n` JPEG files spread over the day and the rooms; their RoomImage rows."""
    rng = np.random.default_rng(15)
    rows: list[dict[str, object]] = []
    step = timedelta(days=1) / n
    for k in range(n):
        pixels = rng.integers(0, 256, size=(PHOTO_SIZE[1], PHOTO_SIZE[0], 3), dtype=np.uint8)
        path = f"room-{k % ROOMS + 1}/{k:06d}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / path, format="JPEG", quality=85)
        size = (root / path).stat().st_size
        rows.append({"room_id": k % ROOMS + 1, "captured_at": DAY_START + step * k, "path": path, "size_bytes": size})
    return rows


def run() -> None:
    # The job's own INFO/WARNING lines (a model loaded inside the job, as here on purpose) would
    # interleave with the figures.
    for name in ("jobs.vision", "app.services.clip_model"):
        logging.getLogger(name).setLevel(logging.ERROR)
    n = int(os.environ.get("BENCH_CLIP_IMAGES", "512"))
    batch = int(os.environ.get("BENCH_CLIP_BATCH", "16"))
    with tempfile.TemporaryDirectory(prefix="bench-clip-") as folder:
        work = Path(folder)
        model_dir = build_model_dir(work / "model", image_size=CLIP_IMAGE_SIZE)
        prompts = write_prompts(work / "prompts.toml")
        started = time.perf_counter()
        rows = write_photographs(work / "images", n)
        print(f"clip: {n} photographs {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG written in {time.perf_counter() - started:.1f}s")

        clock = time.perf_counter()
        ClipModel.load(model_dir).zero_shot(read_prompts(prompts))
        cold_load = time.perf_counter() - clock

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'bench.db'}",
                "CLIP_MODEL_DIR": str(model_dir),
                "CLIP_PROMPTS_FILE": str(prompts),
                "ROOM_IMAGE_DIR": str(work / "images"),
                "CLIP_BATCH_SIZE": batch,
                "APP_TIMEZONE": "Asia/Shanghai",
            }
        )
        with app.app_context():
            db.create_all()
            db.session.add_all(Room(name=f"Room {i + 1}") for i in range(ROOMS))
            db.session.flush()
            db.session.execute(RoomImage.__table__.insert(), rows)
            db.session.commit()
            clip_model.forget_models()
            first = vision.daily_clip_inference(TICK.isoformat())  # loads the model itself: timed
            second = vision.daily_clip_inference(TICK.isoformat())
            db.session.remove()
            db.engine.dispose()
        clip_model.forget_models()
    report(n, batch, cold_load, first, second)


def report(n: int, batch: int, cold_load: float, first: dict[str, object], second: dict[str, object]) -> None:
    def per_image_ms(key: str) -> float:
        return 1000 * float(str(first[key])) / max(int(str(first["inferred"])), 1)

    seconds = float(str(first["seconds"]))
    decode, model, store = per_image_ms("decode_seconds"), per_image_ms("model_seconds"), per_image_ms("store_seconds")
    overhead = 1000 * (seconds - float(str(first["model_seconds"]))) / max(n, 1)
    print(
        f"clip: model load {cold_load * 1000:.0f} ms (tiny model; the job's own load {float(str(first['model_load_seconds'])) * 1000:.0f} ms), "
        f"batches of {batch}"
    )
    print(
        f"clip: first run  {first['inferred']}/{n} inferred in {seconds:.2f}s = {n / seconds:.0f} images/s; "
        f"per image: decode {decode:.2f} ms, model {model:.3f} ms, store {store:.3f} ms; "
        f"overhead around the model {overhead:.2f} ms/image"
    )
    print(
        f"clip: second run {second['skipped']}/{n} skipped, {second['inferred']} inferred, "
        f"in {float(str(second['seconds'])) * 1000:.0f} ms"
    )
    print(
        f"clip: a real model taking M ms per image (its image tower on one thread): about {overhead:.1f} + M ms "
        f"per image, plus its load once per worker"
    )


if __name__ == "__main__":
    run()
