"""A CLIP model exported to ONNX, run with onnxruntime: preprocessing, both towers, zero-shot.

Only the heavy worker imports this module (the web and the scheduler never do:
tests/test_import_rules.py), and it loads the model once per process: `shared_model` keeps it
in a module-level holder, and `python -m jobs.clip_worker` fills that holder before rq forks
its first work horse, so every horse finds the sessions, the tokenizer and the prompts'
embeddings already in memory (copy-on-write: nothing is copied, nothing is loaded again).

Sessions run on the calling thread only (one intra-op and one inter-op thread): a thread
pool created in the worker does not exist in the fork, so a session that relied on one
would run on whatever onnxruntime makes of missing threads. One thread per horse is also
what a nightly batch on a shared host should take.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image
from tokenizers import Tokenizer

from app.services.clip_files import (
    IMAGE_MODEL,
    TEXT_MODEL,
    TOKENIZER,
    ClipModelError,
    Manifest,
    check_model_dir,
    read_prompts,
)

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]

IMAGE_INPUT = "pixel_values"
IMAGE_OUTPUT = "image_embeds"
TEXT_INPUTS = ("input_ids", "attention_mask")
TEXT_OUTPUT = "text_embeds"
FLOAT = "tensor(float)"
INT64 = "tensor(int64)"
# A photograph larger than this many pixels is refused as broken, not decoded (a 24 MP camera
# frame is 24e6; Pillow's own bomb limit is 89e6 and only warns below twice that).
MAX_IMAGE_PIXELS = 64_000_000
# What decoding a broken or hostile file raises: truncated or unknown data, a bomb.
IMAGE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Prediction:
    """One image's normalised embedding and its closest prompt's label with its softmax score."""

    embedding: Floats
    label: str
    score: float


@dataclass
class ZeroShot:
    """The prompts' normalised text embeddings, computed once per model and prompts file."""

    labels: list[str]
    text_embeds: Floats
    logit_scale: float

    def classify(self, image_embeds: Floats) -> list[tuple[str, float]]:
        """Best label and its probability among the prompts, for each normalised image embedding."""
        logits = self.logit_scale * image_embeds @ self.text_embeds.T
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return [(self.labels[i], float(probabilities[row, i])) for row, i in enumerate(best)]


@dataclass
class ClipModel:
    """Both towers, the tokenizer and the manifest of one model directory."""

    directory: Path
    manifest: Manifest
    image_session: ort.InferenceSession
    text_session: ort.InferenceSession
    tokenizer: Tokenizer
    _zero_shot: dict[tuple[tuple[str, str], ...], ZeroShot] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> ClipModel:
        """Load and check a model directory; ClipModelError (one line) when it cannot be used."""
        manifest = check_model_dir(directory)
        image = _session(directory, IMAGE_MODEL)
        text = _session(directory, TEXT_MODEL)
        check_image_signature(directory, image, manifest)
        check_text_signature(directory, text, manifest)
        tokenizer = _tokenizer(directory, manifest)
        return cls(directory, manifest, image, text, tokenizer)

    @property
    def label(self) -> str:
        return self.manifest.label

    def preprocess(self, path: Path) -> Floats:
        """CLIP's preprocessing of one file: RGB, shorter side to S (bicubic), centre S x S crop,
        scaled to [0, 1] and standardised per channel; [3, S, S]. Raises IMAGE_ERRORS for a
        file that is not a whole, decodable image of reasonable size."""
        size = self.manifest.image_size
        with Image.open(path) as opened:
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width}x{height} is more than {MAX_IMAGE_PIXELS} pixels")
            opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it can
            image = opened.convert("RGB")
        scale = size / min(image.size)
        resized = image.resize(
            (max(size, round(image.width * scale)), max(size, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
        left, top = (resized.width - size) // 2, (resized.height - size) // 2
        cropped = resized.crop((left, top, left + size, top + size))
        mean = np.asarray(self.manifest.mean, dtype=np.float32)
        std = np.asarray(self.manifest.std, dtype=np.float32)
        pixels: Floats = (np.asarray(cropped, dtype=np.float32) / np.float32(255.0) - mean) / std
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def embed_images(self, pixels: Floats) -> Floats:
        """Normalised image embeddings of a [N, 3, S, S] batch: [N, D]."""
        (embeds,) = self.image_session.run([IMAGE_OUTPUT], {IMAGE_INPUT: pixels})
        return self._normalised(np.asarray(embeds, dtype=np.float32), IMAGE_MODEL)

    def embed_texts(self, texts: Sequence[str]) -> Floats:
        """Normalised text embeddings of the texts, tokenised and padded to the longest: [N, D]."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        (embeds,) = self.text_session.run([TEXT_OUTPUT], {"input_ids": ids, "attention_mask": mask})
        return self._normalised(np.asarray(embeds, dtype=np.float32), TEXT_MODEL)

    def zero_shot(self, prompts: dict[str, str]) -> ZeroShot:
        """The classifier of these prompts (the text tower runs once per prompts, not per job)."""
        key = tuple(prompts.items())
        if key not in self._zero_shot:
            text_embeds = self.embed_texts(list(prompts.values()))
            self._zero_shot[key] = ZeroShot(list(prompts), text_embeds, self.manifest.logit_scale)
        return self._zero_shot[key]

    def _normalised(self, embeds: Floats, source: str) -> Floats:
        expected = self.manifest.embedding_size
        if embeds.ndim != 2 or embeds.shape[1] != expected:
            raise ClipModelError(
                f"CLIP model in {self.directory}: {source} returned shape {list(embeds.shape)}, "
                f"expected [batch, {expected}] (model.json embedding_size)"
            )
        norms = np.linalg.norm(embeds, axis=1, keepdims=True)
        return embeds / np.maximum(norms, np.float32(1e-12))


def check_image_signature(directory: Path, session: ort.InferenceSession, manifest: Manifest) -> None:
    """pixel_values float [batch, 3, S, S] in, image_embeds float [batch, D] out."""
    size = manifest.image_size
    _check_inputs(directory, IMAGE_MODEL, session, {IMAGE_INPUT: (FLOAT, [None, 3, size, size])})
    _check_output(directory, IMAGE_MODEL, session, IMAGE_OUTPUT, manifest.embedding_size)


def check_text_signature(directory: Path, session: ort.InferenceSession, manifest: Manifest) -> None:
    """input_ids and attention_mask int64 [batch, tokens] in, text_embeds float [batch, D] out."""
    _check_inputs(directory, TEXT_MODEL, session, {name: (INT64, [None, None]) for name in TEXT_INPUTS})
    _check_output(directory, TEXT_MODEL, session, TEXT_OUTPUT, manifest.embedding_size)


def _check_inputs(
    directory: Path,
    file: str,
    session: ort.InferenceSession,
    expected: dict[str, tuple[str, list[int | None]]],
) -> None:
    found = {i.name: i for i in session.get_inputs()}
    for name, (kind, shape) in expected.items():
        where = f"CLIP model in {directory}: {file}"
        if name not in found:
            has = ", ".join(sorted(found)) or "none"
            raise ClipModelError(f"{where}: missing input {name!r} (has {has})")
        if not _matches(found[name].type, found[name].shape, kind, shape):
            raise ClipModelError(
                f"{where}: input {name!r} is {found[name].type} {found[name].shape}, "
                f"expected {kind} {_shape(shape)}"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ClipModelError(f"CLIP model in {directory}: {file}: unexpected input {', '.join(extra)}")


def _check_output(directory: Path, file: str, session: ort.InferenceSession, name: str, size: int) -> None:
    found = {o.name: o for o in session.get_outputs()}
    where = f"CLIP model in {directory}: {file}"
    if name not in found:
        raise ClipModelError(f"{where}: missing output {name!r} (has {', '.join(sorted(found)) or 'none'})")
    output = found[name]
    if not _matches(output.type, output.shape, FLOAT, [None, size]):
        raise ClipModelError(
            f"{where}: output {name!r} is {output.type} {output.shape}, "
            f"expected {FLOAT} {_shape([None, size])} (model.json embedding_size)"
        )


def _matches(kind: str, shape: list[Any], expected_kind: str, expected: list[int | None]) -> bool:
    """Same type and rank; a fixed expected dimension must be fixed to it or left symbolic."""
    if kind != expected_kind or len(shape) != len(expected):
        return False
    pairs = zip(shape, expected, strict=True)
    return all(want is None or not isinstance(have, int) or have == want for have, want in pairs)


def _shape(shape: list[int | None]) -> str:
    names = ("batch" if i == 0 and d is None else "n" if d is None else str(d) for i, d in enumerate(shape))
    return "[" + ", ".join(names) + "]"


def _session(directory: Path, file: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # see the module doc: no thread pool to lose in the fork
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(directory / file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise ClipModelError(f"CLIP model in {directory}: {file}: {_first_line(exc)}") from exc


def _tokenizer(directory: Path, manifest: Manifest) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
    except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot read
        raise ClipModelError(f"CLIP model in {directory}: {TOKENIZER}: {_first_line(exc)}") from exc
    pad_id = tokenizer.token_to_id(manifest.pad_token)
    if pad_id is None:
        raise ClipModelError(
            f"CLIP model in {directory}: {TOKENIZER}: no token {manifest.pad_token!r} (model.json pad_token)"
        )
    tokenizer.enable_truncation(manifest.context_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=manifest.pad_token)
    return tokenizer


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class Loaded:
    """A model held by this process: where and how long it took to load."""

    model: ClipModel
    pid: int
    seconds: float


# The process's models by directory. Filled by preload() in the worker before it forks, so
# every work horse inherits it; a horse that finds it empty loads the model for its one job.
_held: dict[Path, Loaded] = {}


def preload(directory: Path, prompts_file: Path) -> Loaded:
    """Load the model and embed the prompts now, in this process; later forks inherit both."""
    started = time.perf_counter()
    model = ClipModel.load(directory)
    model.zero_shot(read_prompts(prompts_file))
    loaded = Loaded(model, os.getpid(), time.perf_counter() - started)
    _held[directory] = loaded
    logger.info(
        "clip model loaded model=%s dir=%s pid=%d seconds=%.2f",
        model.label,
        directory,
        loaded.pid,
        loaded.seconds,
    )
    return loaded


def shared_model(directory: Path, prompts_file: Path) -> tuple[Loaded, bool]:
    """The model of `directory` and whether this call loaded it (False: the process held it)."""
    held = _held.get(directory)
    if held is not None:
        return held, False
    return preload(directory, prompts_file), True


def forget_models() -> None:
    """Drop every held model (tests and the benchmark measure a cold load with it)."""
    _held.clear()
