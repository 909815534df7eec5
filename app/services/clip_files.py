"""The files the CLIP job reads, checked without loading anything heavy (docs/vision.md).

The web's /healthz and the worker's loader share this module: it imports neither onnxruntime,
numpy, Pillow nor tokenizers, so the web can say whether a model is there without them.

A model directory (CLIP_MODEL_DIR) holds a CLIP export split into its two towers:

    image_model.onnx  pixel_values float32 [batch, 3, S, S]           -> image_embeds float32 [batch, D]
    text_model.onnx   input_ids, attention_mask int64 [batch, tokens] -> text_embeds float32 [batch, D]
    tokenizer.json    the text tower's tokenizer (Hugging Face `tokenizers` format)
    model.json        name, version, D, S and the preprocessing constants (Manifest)
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_MODEL = "image_model.onnx"
TEXT_MODEL = "text_model.onnx"
TOKENIZER = "tokenizer.json"
MANIFEST = "model.json"
REQUIRED_FILES = (IMAGE_MODEL, TEXT_MODEL, TOKENIZER, MANIFEST)

# OpenAI CLIP's preprocessing (every ViT-B/32, B/16, L/14 export uses these).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_LOGIT_SCALE = 100.0  # exp(logit_scale) of the trained model: softmax temperature of the scores
CLIP_CONTEXT_LENGTH = 77
CLIP_PAD_TOKEN = "<|endoftext|>"


class ClipModelError(RuntimeError):
    """The model or the prompts cannot be used; the message is one line naming the place and
    what is missing. No retry can fix it: jobs fail with it at once (jobs.vision)."""


@dataclass(frozen=True)
class Manifest:
    """model.json: who the model is (the results are keyed by name and version) and how to feed it."""

    name: str
    version: str
    embedding_size: int
    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    context_length: int = CLIP_CONTEXT_LENGTH
    pad_token: str = CLIP_PAD_TOKEN
    logit_scale: float = CLIP_LOGIT_SCALE

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def missing_files(directory: Path) -> list[str]:
    """The required files `directory` lacks (all of them when it does not exist)."""
    return [name for name in REQUIRED_FILES if not (directory / name).is_file()]


def check_model_dir(directory: Path) -> Manifest:
    """The manifest of a complete model directory; ClipModelError naming what is missing."""
    missing = missing_files(directory)
    if missing:
        where = "does not exist" if not directory.is_dir() else f"missing {', '.join(missing)}"
        raise ClipModelError(f"CLIP model in {directory}: {where} (CLIP_MODEL_DIR; see docs/vision.md)")
    return read_manifest(directory)


def read_manifest(directory: Path) -> Manifest:
    """model.json, checked: ClipModelError naming the file and the first bad field."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClipModelError(f"CLIP model in {directory}: {MANIFEST}: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise ClipModelError(f"CLIP model in {directory}: {MANIFEST}: expected a JSON object")
    try:
        return Manifest(
            name=_text(data, "name"),
            version=_text(data, "version"),
            embedding_size=_positive(data, "embedding_size"),
            image_size=_positive(data, "image_size"),
            mean=_triple(data, "mean", CLIP_MEAN),
            std=_triple(data, "std", CLIP_STD),
            context_length=_positive(data, "context_length", CLIP_CONTEXT_LENGTH),
            pad_token=_text(data, "pad_token", CLIP_PAD_TOKEN),
            logit_scale=float(_number(data, "logit_scale", CLIP_LOGIT_SCALE)),
        )
    except ValueError as exc:
        raise ClipModelError(f"CLIP model in {directory}: {MANIFEST}: {exc}") from None


def read_prompts(path: Path) -> dict[str, str]:
    """The `[labels]` table of the prompts file: label → prompt, in file order, at least two."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClipModelError(f"CLIP prompts {path}: {_first_line(exc)} (CLIP_PROMPTS_FILE)") from None
    labels = data.get("labels")
    if not isinstance(labels, dict) or len(labels) < 2:
        raise ClipModelError(f"CLIP prompts {path}: expected a [labels] table of at least two label = prompt")
    bad = [label for label, prompt in labels.items() if not isinstance(prompt, str) or not prompt.strip()]
    if bad:
        raise ClipModelError(f"CLIP prompts {path}: labels.{bad[0]}: expected a non-empty prompt string")
    too_long = [label for label in labels if len(label) > 100]  # ImageInference.label is String(100)
    if too_long:
        raise ClipModelError(f"CLIP prompts {path}: label {too_long[0][:20]!r}...: over 100 characters")
    return {str(label): str(prompt) for label, prompt in labels.items()}


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _number(data: dict[str, Any], key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return value


def _positive(data: dict[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}: expected a whole number >= 1, got {value!r}")
    return value


Triple = tuple[float, float, float]


def _triple(data: dict[str, Any], key: str, default: Triple) -> Triple:
    value = data.get(key, list(default))
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, int | float) for v in value):
        raise ValueError(f"{key}: expected three numbers (one per RGB channel), got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))
