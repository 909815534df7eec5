"""Demo room photographs: small generated PNG files, so the nightly CLIP job has work.

Files, not blobs: cameras drop files, and the job reads them where they are (ROOM_IMAGE_DIR,
rows hold the path relative to it). Each room gets a picture every IMAGE_STEP over the last
IMAGE_HOURS, which covers the previous local day whenever the seed runs. A room's plants grow
with the days (seedlings, leafy, flowering); the last room stays empty. 96 x 96 pixels, a few
kilobytes each: 48 images for the 4 default rooms, written in well under a second.

Pillow is imported when the images are drawn, not when this module is: the web registers the
seed command and must not import the vision dependencies (tests/test_import_rules.py).
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from app.demo.rows import Row

logger = logging.getLogger(__name__)

IMAGE_HOURS = 72
IMAGE_STEP = timedelta(hours=6)
IMAGE_SIZE = 96
SOIL = (92, 64, 40)
LEAF = (46, 139, 60)
BLOSSOM = (214, 96, 160)


def image_path(room_id: int, captured_at: datetime) -> str:
    """Where a room's photograph goes, relative to ROOM_IMAGE_DIR."""
    return f"room-{room_id}/{captured_at:%Y%m%dT%H%M%SZ}.png"


def image_rows(rng: random.Random, now: datetime, room_ids: list[int], root: Path) -> list[Row]:
    """Draw and write every room's photographs under `root`; their rows (none without Pillow)."""
    try:
        from PIL import Image, ImageDraw  # the vision extra
    except ImportError:
        logger.warning("room images not seeded: Pillow is missing (pip install -e '.[vision]')")
        return []
    rows: list[Row] = []
    shots = IMAGE_HOURS // int(IMAGE_STEP.total_seconds() // 3600)
    for n_room, room_id in enumerate(room_ids):
        empty = n_room == len(room_ids) - 1 and len(room_ids) > 1
        for k in range(shots):
            captured_at = (now - IMAGE_STEP * (shots - 1 - k)).replace(microsecond=0)
            image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), SOIL if not empty else (200, 200, 196))
            if not empty:
                _draw_plants(ImageDraw.Draw(image).ellipse, rng, growth=(k + 1) / shots)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=False)
            data = buffer.getvalue()
            path = image_path(room_id, captured_at)
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
            rows.append(
                {"room_id": room_id, "captured_at": captured_at, "path": path, "size_bytes": len(data)}
            )
    return rows


def _draw_plants(ellipse: Callable[..., None], rng: random.Random, growth: float) -> None:
    """A 3 x 3 tray of plants whose leaves grow with `growth` (0..1); flowers past 0.7.
    `ellipse` is Pillow's ImageDraw.ellipse of the picture."""
    cell = IMAGE_SIZE // 3
    for row in range(3):
        for col in range(3):
            cx = col * cell + cell // 2 + rng.randint(-2, 2)
            cy = row * cell + cell // 2 + rng.randint(-2, 2)
            radius = max(2, round(cell * 0.45 * growth))
            ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=LEAF)
            if growth > 0.7:
                ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=BLOSSOM)
