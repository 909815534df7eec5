"""The nightly CLIP inference over one day's room photographs (issue 15).

Images of the window already inferred by the same model name and version are skipped, so a
rerun or a backfill of the same day changes nothing. The others go through the model in
batches; each batch is committed on its own, so a run stopped half way (timeout, deploy) keeps
what it did and the next run does only the rest. An image that cannot be decoded (missing,
truncated, not an image, too large) is counted, logged and left out; the batch goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
from sqlalchemy import Table, select

from app.extensions import db
from app.models import ImageInference, RoomImage, now_utc
from app.services.clip_model import IMAGE_ERRORS, ClipModel, Floats, ZeroShot
from app.services.timewindows import Window
from app.services.upsert import upsert_insert

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class InferenceSummary:
    """What one run did; the *_seconds split its time into decoding, the model and storing."""

    images: int = 0
    inferred: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0
    model_seconds: float = 0.0
    store_seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def images_in(window: Window) -> list[RoomImage]:
    """Every room's images captured in the window, oldest first."""
    return list(
        db.session.scalars(
            select(RoomImage)
            .where(RoomImage.captured_at >= window.start, RoomImage.captured_at < window.end)
            .order_by(RoomImage.captured_at, RoomImage.id)
        )
    )


def already_inferred(image_ids: Sequence[int], model: ClipModel) -> set[int]:
    """The images among `image_ids` that this model name and version has a result for."""
    found: set[int] = set()
    for chunk in _chunks(list(image_ids), 500):  # stays under every database's parameter limit
        found.update(
            db.session.scalars(
                select(ImageInference.image_id).where(
                    ImageInference.image_id.in_(chunk),
                    ImageInference.model_name == model.manifest.name,
                    ImageInference.model_version == model.manifest.version,
                )
            )
        )
    return found


def infer_window(
    window: Window, model: ClipModel, zero_shot: ZeroShot, image_root: Path, batch_size: int
) -> InferenceSummary:
    """Infer every image of the window not yet inferred by this model; see the module doc."""
    started = time.perf_counter()
    images = images_in(window)
    done = already_inferred([image.id for image in images], model)
    todo = [image for image in images if image.id not in done]
    summary = InferenceSummary(images=len(images), skipped=len(images) - len(todo))
    db.session.commit()  # no transaction stays open while the model runs
    for batch in _chunks(todo, batch_size):
        _infer_batch(batch, model, zero_shot, image_root, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _infer_batch(
    batch: list[RoomImage], model: ClipModel, zero_shot: ZeroShot, image_root: Path, summary: InferenceSummary
) -> None:
    clock = time.perf_counter()
    decoded: list[tuple[RoomImage, Floats]] = []
    for image in batch:
        try:
            decoded.append((image, model.preprocess(image_root / image.path)))
        except IMAGE_ERRORS as exc:
            summary.failed += 1
            logger.warning(
                "clip image skipped image_id=%d room_id=%d path=%s error=%s: %s",
                image.id,
                image.room_id,
                image.path,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
    summary.decode_seconds += time.perf_counter() - clock
    if not decoded:
        return
    clock = time.perf_counter()
    embeds = model.embed_images(np.stack([pixels for _, pixels in decoded]))
    labels = zero_shot.classify(embeds)
    summary.model_seconds += time.perf_counter() - clock
    clock = time.perf_counter()
    inferred_at = now_utc()
    rows = [
        {
            "image_id": image.id,
            "model_name": model.manifest.name,
            "model_version": model.manifest.version,
            "embedding": embedding.astype("<f4").tobytes(),
            "embedding_size": int(embedding.shape[0]),
            "label": label,
            "score": score,
            "inferred_at": inferred_at,
        }
        for (image, _), embedding, (label, score) in zip(decoded, embeds, labels, strict=True)
    ]
    # SQLAlchemy types __table__ as FromClause (a class may map a join); ours is a Table.
    insert = upsert_insert(cast(Table, ImageInference.__table__))
    # A concurrent run of the same day (a backfill beside the nightly tick) may have stored
    # some of them meanwhile: theirs stay, with the same model the result is the same.
    stored = db.session.scalars(
        insert.on_conflict_do_nothing(index_elements=["image_id", "model_name", "model_version"]).returning(
            ImageInference.id
        ),
        rows,
    ).all()
    db.session.commit()
    # Only the rows this run stored: those a concurrent run stored first are not counted twice.
    summary.inferred += len(stored)
    summary.skipped += len(rows) - len(stored)
    summary.store_seconds += time.perf_counter() - clock


def embedding_of(row: ImageInference) -> Floats:
    """The stored embedding as a float32 vector."""
    return np.frombuffer(row.embedding, dtype="<f4").astype(np.float32)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
