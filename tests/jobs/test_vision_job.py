"""The nightly CLIP job on a tiny model the suite builds (bench.tiny_clip): in the test process
for its results, in real `heavy` workers for loading once per worker and failing without retry."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import select

from app.extensions import db
from app.models import ImageInference, Room, RoomImage
from app.services import clip_model
from app.services.clip_files import ClipModelError
from app.services.clip_inference import embedding_of
from bench.tiny_clip import COLOURS, EMBEDDING_SIZE, build_model_dir, png, write_prompts
from cronwork.ledger import Ledger
from cronwork.serializer import JSONJob
from jobs import vision
from jobs.runtime import is_allowed
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import KEYS, enqueue_run, record, rq_status_is, state_is

# 03:02:25 in Asia/Shanghai on 2026-01-06: the job covers the local day 2026-01-05,
# [2026-01-04T16:00Z, 2026-01-05T16:00Z).
TICK = datetime(2026, 1, 5, 19, 2, 25, tzinfo=UTC)
DAY_START = datetime(2026, 1, 4, 16, 0, tzinfo=UTC)
CLIP_BODY = 'func = "jobs.vision.daily_clip_inference"\ncron = "25 2 3 * * *"\nqueue = "heavy"\ntimeout = "2m"\n'


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("clip") / "model")


@pytest.fixture
def clip_app(app: Flask, model_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    """The test app configured for the tiny model, batches of 2, images under tmp_path."""
    app.config.update(
        CLIP_MODEL_DIR=str(model_dir),
        CLIP_PROMPTS_FILE=str(write_prompts(tmp_path / "prompts.toml")),
        ROOM_IMAGE_DIR=str(tmp_path / "images"),
        CLIP_BATCH_SIZE=2,
    )
    yield app
    clip_model.forget_models()


def add_image(app: Flask, room: Room, captured_at: datetime, data: bytes) -> RoomImage:
    path = f"room-{room.id}/{captured_at:%Y%m%dT%H%M%S}.png"
    file = Path(app.config["ROOM_IMAGE_DIR"]) / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    image = RoomImage(room_id=room.id, captured_at=captured_at, path=path, size_bytes=len(data))
    db.session.add(image)
    return image


@pytest.fixture
def photographed(clip_app: Flask) -> dict[str, list[int]]:
    """Two rooms, one picture of each colour in each during the day, one the day before."""
    rooms = [Room(name="Grow Room A"), Room(name="Grow Room B")]
    db.session.add_all(rooms)
    db.session.flush()
    colours: dict[str, list[int]] = {c: [] for c in COLOURS}
    for n, room in enumerate(rooms):
        for k, colour in enumerate(COLOURS):
            image = add_image(clip_app, room, DAY_START + timedelta(hours=1 + 8 * k, minutes=n), png(colour))
            db.session.flush()
            colours[colour].append(image.id)
    add_image(clip_app, rooms[0], DAY_START - timedelta(minutes=1), png("red"))  # the day before
    db.session.commit()
    return colours


def test_the_entry_point_is_a_job_that_takes_the_tick() -> None:
    assert is_allowed("jobs.vision.daily_clip_inference")
    assert inspect.signature(vision.daily_clip_inference).parameters["scheduled_for"].default is None


def results() -> list[ImageInference]:
    db.session.expire_all()
    return list(db.session.scalars(select(ImageInference).order_by(ImageInference.image_id)))


@pytest.mark.both_databases  # the results' INSERT … ON CONFLICT … RETURNING on both dialects
def test_the_job_embeds_and_labels_the_days_images_then_skips_them(photographed: dict[str, list[int]]) -> None:
    summary = vision.daily_clip_inference(TICK.isoformat())
    assert summary["day"] == "2026-01-05" and summary["model"] == "tiny-clip@1"
    assert {k: summary[k] for k in ("images", "inferred", "skipped", "failed")} == {
        "images": 6, "inferred": 6, "skipped": 0, "failed": 0,
    }  # fmt: skip
    assert isinstance(summary["seconds"], float) and summary["seconds"] >= 0
    rows = results()
    assert len(rows) == 6  # the picture of the day before is not the job's
    for row in rows:
        embedding = embedding_of(row)
        assert row.embedding_size == EMBEDDING_SIZE == embedding.shape[0]
        assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5
        assert (row.model_name, row.model_version) == ("tiny-clip", "1")
    labels = {row.image_id: row.label for row in rows}
    assert labels == {image_id: colour for colour, ids in photographed.items() for image_id in ids}
    assert all(0.5 < row.score <= 1.0 for row in rows)

    again = vision.daily_clip_inference(TICK.isoformat())
    assert (again["images"], again["inferred"], again["skipped"], again["failed"]) == (6, 0, 6, 0)
    assert [(r.id, r.inferred_at) for r in results()] == [(r.id, r.inferred_at) for r in rows]


def test_a_broken_image_is_counted_and_logged_and_the_rest_go_on(
    clip_app: Flask, photographed: dict[str, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    room = db.session.scalars(select(Room)).first()
    assert room is not None
    broken = add_image(clip_app, room, DAY_START + timedelta(hours=2), png("green")[:50])  # truncated
    gone = add_image(clip_app, room, DAY_START + timedelta(hours=3), png("blue"))
    db.session.commit()
    (Path(clip_app.config["ROOM_IMAGE_DIR"]) / gone.path).unlink()
    with caplog.at_level(logging.WARNING, logger="app.services.clip_inference"):
        summary = vision.daily_clip_inference(TICK.isoformat())
    assert (summary["images"], summary["inferred"], summary["failed"]) == (8, 6, 2)
    assert {r.image_id for r in results()} == {i for ids in photographed.values() for i in ids}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"image_id={broken.id}" in logged and f"image_id={gone.id}" in logged
    assert "FileNotFoundError" in logged


def test_a_new_model_version_infers_the_day_again(
    clip_app: Flask, photographed: dict[str, list[int]], tmp_path: Path
) -> None:
    assert vision.daily_clip_inference(TICK.isoformat())["inferred"] == 6
    clip_app.config["CLIP_MODEL_DIR"] = str(build_model_dir(tmp_path / "v2", version="2"))
    summary = vision.daily_clip_inference(TICK.isoformat())
    assert (summary["model"], summary["inferred"], summary["skipped"]) == ("tiny-clip@2", 6, 0)
    assert sorted({r.model_version for r in results()}) == ["1", "2"]


def test_without_a_model_the_job_fails_in_one_line(photographed: dict[str, list[int]], clip_app: Flask) -> None:
    clip_app.config["CLIP_MODEL_DIR"] = "/nonexistent/clip"
    with pytest.raises(ClipModelError, match=r"^CLIP model in /nonexistent/clip: does not exist") as failed:
        vision.daily_clip_inference(TICK.isoformat())
    assert "\n" not in str(failed.value)
    assert results() == []


def test_the_demo_seed_gives_the_job_work(clip_app: Flask) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    done = clip_app.test_cli_runner().invoke(
        args=["demo", "seed", "--tasks", "5", "--rentals", "2", "--rooms", "2", "--now", now.isoformat()]
    )
    assert done.exit_code == 0, done.output
    assert "room images" in done.output
    db.session.remove()
    summary = vision.daily_clip_inference(now.isoformat())
    assert summary["images"] >= 4 and summary["inferred"] == summary["images"] and summary["failed"] == 0
    labels = {r.label for r in results()}
    assert labels <= set(COLOURS)


def clip_env(app: Flask) -> dict[str, str]:
    keys = ("CLIP_MODEL_DIR", "CLIP_PROMPTS_FILE", "ROOM_IMAGE_DIR")
    return {key: str(app.config[key]) for key in keys}


@pytest.mark.slow
def test_a_heavy_worker_loads_the_model_once_before_forking(
    clip_app: Flask, photographed: dict[str, list[int]], redis: Redis, processes: Processes
) -> None:
    first = enqueue_run(redis, "clip", CLIP_BODY, TICK)
    second = enqueue_run(redis, "clip", CLIP_BODY, TICK + timedelta(days=1))
    worker = processes.start("-m", "jobs.clip_worker", "heavy", name="heavy", extra_env=clip_env(clip_app))
    for job_id in (first, second):
        wait_until(lambda job_id=job_id: state_is(redis, "clip", job_id, "succeeded", "failed"), timeout=60)
        wait_until(lambda job_id=job_id: rq_status_is(redis, job_id, "finished"), timeout=10)
    one = JSONJob.fetch(first, connection=redis).return_value()
    two = JSONJob.fetch(second, connection=redis).return_value()
    assert (one["inferred"], one["failed"], two["images"]) == (6, 0, 0), (one, two)
    assert one["model_load_seconds"] == two["model_load_seconds"] == 0.0  # the horses found it loaded
    loads = re.findall(r"clip model loaded model=tiny-clip@1 .* pid=(\d+)", processes.output(worker))
    assert loads == [str(worker.pid)], processes.output(worker)  # once, in the worker, not a horse
    assert len(results()) == 6


@pytest.mark.slow
def test_a_heavy_worker_without_a_model_fails_the_run_once_without_retries(
    clip_app: Flask, redis: Redis, processes: Processes, tmp_path: Path
) -> None:
    env = {**clip_env(clip_app), "CLIP_MODEL_DIR": str(tmp_path / "no-model")}
    job_id = enqueue_run(redis, "clip", CLIP_BODY + 'retries = 2\nretry_backoff = ["1s"]\n', TICK)
    worker = processes.start("-m", "jobs.clip_worker", "heavy", name="heavy", extra_env=env)
    wait_until(lambda: state_is(redis, "clip", job_id, "failed", "retrying"), timeout=60)
    wait_until(lambda: rq_status_is(redis, job_id, "failed"), timeout=10)
    entry = record(redis, "clip", job_id)
    assert entry["state"] == "failed" and entry["error_type"] == "ClipModelError", entry
    assert entry["error"] == f"CLIP model in {tmp_path / 'no-model'}: does not exist (CLIP_MODEL_DIR; see docs/vision.md)"
    attempts = Ledger(redis, KEYS).attempts("clip", int(TICK.timestamp()))
    assert [a["state"] for a in attempts] == ["failed"]  # no retry storm
    output = processes.output(worker)
    assert "clip model not loaded: CLIP model in" in output and worker.poll() is None  # no crash loop
