"""The CLIP loader on a model the suite builds (bench.tiny_clip), and /healthz's view of it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from app.services.clip_files import IMAGE_MODEL, MANIFEST, TEXT_MODEL, TOKENIZER, ClipModelError, read_prompts
from app.services.clip_model import IMAGE_ERRORS, ClipModel
from bench.tiny_clip import COLOURS, EMBEDDING_SIZE, PROMPTS, build_model_dir, png, write_prompts
from cronwork import store
from cronwork.keys import Keys
from cronwork.loader import load_schedule
from cronwork.serializer import json_queue
from scheduler_boot.sync import apply_plan


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("clip") / "model")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> ClipModel:
    return ClipModel.load(model_dir)


def one_line(exc: pytest.ExceptionInfo[ClipModelError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_embeddings_have_the_declared_size_and_unit_length(model: ClipModel, tmp_path: Path) -> None:
    paths = []
    for colour in COLOURS:
        paths.append(tmp_path / f"{colour}.png")
        paths[-1].write_bytes(png(colour))
    pixels = np.stack([model.preprocess(p) for p in paths])
    assert pixels.shape == (3, 3, 32, 32) and pixels.dtype == np.float32
    embeds = model.embed_images(pixels)
    assert embeds.shape == (3, EMBEDDING_SIZE) == (3, model.manifest.embedding_size)
    np.testing.assert_allclose(np.linalg.norm(embeds, axis=1), 1.0, rtol=1e-5)
    texts = model.embed_texts(list(PROMPTS.values()))
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    labels = model.zero_shot(PROMPTS).classify(embeds)
    assert [label for label, _ in labels] == list(COLOURS)
    assert all(0.5 < score <= 1.0 for _, score in labels)


def test_the_prompts_are_embedded_once_per_model(model: ClipModel) -> None:
    assert model.zero_shot(PROMPTS) is model.zero_shot(dict(PROMPTS))


def test_a_file_that_is_not_an_image_raises_an_image_error(model: ClipModel, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(png("red")[:60])  # truncated
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    for path in (broken, garbage, tmp_path / "absent.png"):
        with pytest.raises(IMAGE_ERRORS):
            model.preprocess(path)


def test_a_missing_model_is_one_line_naming_the_directory_and_the_files(tmp_path: Path) -> None:
    with pytest.raises(ClipModelError) as absent:
        ClipModel.load(tmp_path / "nowhere")
    assert one_line(absent).startswith(f"CLIP model in {tmp_path / 'nowhere'}: does not exist")

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / IMAGE_MODEL).write_bytes(b"")
    with pytest.raises(ClipModelError) as missing:
        ClipModel.load(partial)
    assert f"CLIP model in {partial}: missing {TEXT_MODEL}, {TOKENIZER}, {MANIFEST}" in one_line(missing)


@pytest.mark.parametrize(
    ("breakage", "says"),
    [
        ("image_input", "image_model.onnx: missing input 'pixel_values' (has pixels)"),
        ("embedding_size", "image_model.onnx: output 'image_embeds' is tensor(float) ['batch', 16], "
         "expected tensor(float) [batch, 8]"),
        ("text_output", "text_model.onnx: missing output 'text_embeds' (has text_embeds_renamed)"),
        ("image_size", "input 'pixel_values' is tensor(float) ['batch', 3, 32, 32], expected tensor(float) "
         "[batch, 3, 64, 64]"),
        ("corrupt", "image_model.onnx: [ONNXRuntimeError]"),
        ("manifest", "model.json: version: expected a non-empty string"),
        ("pad_token", "tokenizer.json: no token '<|endoftext|>' (model.json pad_token)"),
    ],
)
def test_a_model_with_the_wrong_signature_is_refused_in_one_line(
    tmp_path: Path, breakage: str, says: str
) -> None:
    directory = build_model_dir(tmp_path / "model")
    manifest = json.loads((directory / MANIFEST).read_text())
    if breakage == "image_input":
        tower = onnx.load(directory / IMAGE_MODEL)
        tower.graph.input[0].name = "pixels"
        tower.graph.node[0].input[0] = "pixels"
        onnx.save(tower, directory / IMAGE_MODEL)
    elif breakage == "text_output":
        tower = onnx.load(directory / TEXT_MODEL)
        tower.graph.output[0].name = "text_embeds_renamed"
        tower.graph.node[-1].output[0] = "text_embeds_renamed"
        onnx.save(tower, directory / TEXT_MODEL)
    elif breakage == "corrupt":
        (directory / IMAGE_MODEL).write_bytes(b"\x08\x01garbage")
    else:
        changes = {
            "embedding_size": {"embedding_size": 8},
            "image_size": {"image_size": 64},
            "manifest": {"version": ""},
            "pad_token": {"pad_token": "<|endoftext|>"},
        }[breakage]
        (directory / MANIFEST).write_text(json.dumps({**manifest, **changes}))
    with pytest.raises(ClipModelError) as refused:
        ClipModel.load(directory)
    message = one_line(refused)
    assert message.startswith(f"CLIP model in {directory}: ") and says in message, message


def test_prompts_file_errors_are_one_line(tmp_path: Path) -> None:
    assert read_prompts(write_prompts(tmp_path / "ok.toml")) == PROMPTS
    for text, says in (
        ("[labels]\nonly = 'one'\n", "at least two"),
        ("[labels]\na = 'x'\nb = ''\n", "labels.b: expected a non-empty prompt"),
        ("labels = [", "CLIP prompts"),
    ):
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(ClipModelError) as bad:
            read_prompts(tmp_path / "bad.toml")
        assert says in one_line(bad) and str(tmp_path / "bad.toml") in str(bad.value)


CLIP_SCHEDULE = """
[schedules.hc]
func = "jobs.system.health_check"
every = "30m"

[schedules.clip]
func = "jobs.vision.daily_clip_inference"
cron = "25 2 3 * * *"
queue = "heavy"
"""


@pytest.fixture
def clip_registered(ops_app: Flask, redis: Redis, tmp_path: Path) -> None:
    """A scheduler beating, live workers on default and heavy, the CLIP job registered."""
    path = tmp_path / "clip-schedule.toml"
    path.write_text(CLIP_SCHEDULE)
    apply_plan(redis, load_schedule(path).specs, Keys(), datetime.now(UTC))
    store.beat_scheduler(redis, Keys(), "scheduler-1", time.time())
    Worker([json_queue("default", redis), json_queue("heavy", redis)], connection=redis).register_birth()


@pytest.mark.usefixtures("clip_registered")
def test_healthz_shows_a_missing_model_without_being_unhealthy(
    client: FlaskClient, ops_app: Flask, tmp_path: Path
) -> None:
    ops_app.config["CLIP_MODEL_DIR"] = str(tmp_path / "no-model")
    response = client.get("/healthz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "ok"
    assert response.get_json()["checks"]["clip_model"] == {"ok": False, "required": False, "present": False}


@pytest.mark.usefixtures("clip_registered")
def test_healthz_names_the_model_when_it_is_there(client: FlaskClient, ops_app: Flask, model_dir: Path) -> None:
    ops_app.config["CLIP_MODEL_DIR"] = str(model_dir)
    checks = client.get("/healthz").get_json()["checks"]
    assert checks["clip_model"] == {"ok": True, "required": False, "present": True, "model": "tiny-clip@1"}


def test_no_clip_schedule_no_model_check(client: FlaskClient) -> None:
    assert "clip_model" not in client.get("/healthz").get_json()["checks"]
