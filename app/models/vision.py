"""Room photographs and what the nightly CLIP job inferred from them (issue 15)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, now_utc


class RoomImage(Base):
    """One photograph of a room. The file lives under ROOM_IMAGE_DIR; `path` is relative to
    it, so the directory can move (another volume, another host) without touching rows."""

    __tablename__ = "room_images"
    __table_args__ = (
        Index("ix_room_images_captured_at", "captured_at"),
        UniqueConstraint("path", name="uq_room_images_path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    captured_at: Mapped[datetime]
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int]

    def __repr__(self) -> str:
        return f"<RoomImage {self.id} room={self.room_id} {self.path!r}>"


class ImageInference(Base):
    """A model's reading of one image: its embedding and best zero-shot label.

    One row per (image, model name, model version): a rerun with the same model skips the
    image, a new model version infers it again beside the old result.
    """

    __tablename__ = "image_inferences"
    __table_args__ = (
        UniqueConstraint(
            "image_id", "model_name", "model_version", name="uq_image_inferences_image_model"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("room_images.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(100))
    # float32 little-endian, L2-normalised: 2 KiB for a 512-d CLIP embedding, on every database.
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_size: Mapped[int]
    label: Mapped[str] = mapped_column(String(100))
    score: Mapped[float]
    inferred_at: Mapped[datetime] = mapped_column(default=now_utc)

    def __repr__(self) -> str:
        return f"<ImageInference image={self.image_id} {self.model_name}@{self.model_version} {self.label}>"
