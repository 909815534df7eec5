"""A tiny CLIP-shaped model the tests and `python -m bench clip` build, and images for it.

The same input and output signature as a real export (app.services.clip_files): an image tower
`pixel_values` float [batch, 3, S, S] -> `image_embeds` float [batch, D] and a text tower
`input_ids`, `attention_mask` int64 [batch, tokens] -> `text_embeds` float [batch, D], a
WordLevel `tokenizers` tokenizer, a model.json. Its "meaning" is colour: the image tower
averages each channel into dimensions 0-2, and the words red, green and blue embed on those
dimensions, so a green picture is closest to the prompt that says green. Other words embed on
their own dimensions, the same for every prompt.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers

from app.services.clip_files import CLIP_MEAN, CLIP_STD, IMAGE_MODEL, MANIFEST, TEXT_MODEL, TOKENIZER

EMBEDDING_SIZE = 16
IMAGE_SIZE = 32
PAD, UNKNOWN = "[PAD]", "[UNK]"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
WORDS = ["red", "green", "blue", "a", "photo", "of", "room", "plants", "an", "empty"]
PROMPTS = {colour: f"a photo of a {colour} room" for colour in COLOURS}
OPSET = 18


def build_model_dir(directory: Path, *, version: str = "1", image_size: int = IMAGE_SIZE) -> Path:
    """Write the four files of a model directory; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(image_tower(image_size), directory / IMAGE_MODEL)
    onnx.save(text_tower(), directory / TEXT_MODEL)
    tokenizer().save(str(directory / TOKENIZER))
    manifest = {
        "name": "tiny-clip",
        "version": version,
        "embedding_size": EMBEDDING_SIZE,
        "image_size": image_size,
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
        "context_length": 16,
        "pad_token": PAD,
        "logit_scale": 100.0,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return directory


def write_prompts(path: Path, prompts: dict[str, str] | None = None) -> Path:
    lines = ["[labels]", *(f'{label} = "{prompt}"' for label, prompt in (prompts or PROMPTS).items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def image_tower(size: int) -> onnx.ModelProto:
    """Per-channel mean of the (normalised) pixels onto dimensions 0-2 of the embedding."""
    projection = np.zeros((3, EMBEDDING_SIZE), dtype=np.float32)
    projection[0, 0] = projection[1, 1] = projection[2, 2] = 1.0
    projection[:, 3:] = 0.01  # a little of everything elsewhere: no dimension is always zero
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values", "spatial_axes"], ["channels4"], keepdims=0),
        helper.make_node("MatMul", ["channels4", "projection"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])],
        [
            numpy_helper.from_array(np.asarray([2, 3], dtype=np.int64), "spatial_axes"),
            numpy_helper.from_array(projection, "projection"),
        ],
    )
    return _model(graph)


def text_tower() -> onnx.ModelProto:
    """Mean of the token embeddings under the attention mask."""
    vocabulary = [PAD, UNKNOWN, *WORDS]
    table = np.zeros((len(vocabulary), EMBEDDING_SIZE), dtype=np.float32)
    for index, word in enumerate(WORDS):
        table[index + 2, index if word in COLOURS else 3 + index % (EMBEDDING_SIZE - 3)] = 1.0
    table[1, EMBEDDING_SIZE - 1] = 1.0  # unknown words
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "sequence_axis"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "sequence_axis"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["text_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.asarray([2], dtype=np.int64), "last_axis"),
            numpy_helper.from_array(np.asarray([1], dtype=np.int64), "sequence_axis"),
        ],
    )
    return _model(graph)


def tokenizer() -> Tokenizer:
    vocabulary = {token: i for i, token in enumerate([PAD, UNKNOWN, *WORDS])}
    built = Tokenizer(models.WordLevel(vocabulary, unk_token=UNKNOWN))
    built.pre_tokenizer = pre_tokenizers.Whitespace()
    return built


def png(colour: str | tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    """A plain picture of one colour (not square: the centre crop is exercised)."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnxruntime of every supported version reads
    onnx.checker.check_model(model)
    return model
