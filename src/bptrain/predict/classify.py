"""Run a trained model on users' own images: `bptrain predict` and `bptrain eval --images`.

Images are read (read.py, decode.py) and prepared the way the checkpoint's training data was
(preprocess.py), then go
through the network in batches; softmax turns its scores into probabilities here (the
network's predict returns scores, as in the seed).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..engine.train import evaluate
from ..errors import ConfigError, DataError
from ..functional import softmax
from ..run.model import Model, eval_record, load_model
from .decode import InputError, Item
from .folders import class_folders
from .preprocess import preprocess_many
from .read import read_inputs
from .saving import PreprocessedFolder

log = logging.getLogger("bptrain.predict")

# The preprocessing each dataset's images went through before they were published.
STYLE_OF_DATASET = {"mnist": "digits", "fashion-mnist": "fashion"}


class InputsFailed(DataError):
    """Some inputs could not be used; each one already had its own `Error:` line."""

    already_reported = True


def style_for(model: Model, requested: str) -> str:
    """The preprocessing to apply: the dataset's convention for `auto`."""
    if requested != "auto":
        return requested
    info = model.info
    style = STYLE_OF_DATASET.get(info.dataset)
    if style is None:  # `idx` data: digits when it is shaped like them
        digit_like = tuple(info.input_shape) == (1, 28, 28) and info.num_classes == 10
        style = "digits" if digit_like else "none"
    return style


def image_size(model: Model) -> tuple[int, int]:
    """(H, W) of the network's input images; predict needs (1, H, W) grayscale input."""
    shape = tuple(model.info.input_shape)
    if len(shape) != 3 or shape[0] != 1:
        raise ConfigError(
            f"{model.ckpt.path} takes input of shape {shape}; predict reads grayscale images "
            "(1, H, W)"
        )
    return shape[1], shape[2]


@dataclass
class Prepared:
    """One image ready for the network, and where it came from."""

    item: Item
    x: np.ndarray  # (H, W) float32 in [0, 1]


def prepared(
    items: Iterable[Item | InputError],
    style: str,
    size: tuple[int, int],
    on_error: Callable[[InputError], None],
) -> Iterator[Prepared]:
    """Preprocessed images in order; an input that fails is reported and skipped."""
    for one in preprocess_many(items, style, size):
        if isinstance(one, InputError):
            on_error(one)
        else:
            yield Prepared(*one)


def batches(stream: Iterable[Prepared], size: int) -> Iterator[list[Prepared]]:
    batch: list[Prepared] = []
    for one in stream:
        batch.append(one)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def probabilities(model: Model, batch: Sequence[Prepared]) -> np.ndarray:
    """(B, classes) softmax probabilities of a batch, in float64 for exact sums in records."""
    x = np.stack([p.x for p in batch])[:, None]  # (B, H, W) -> (B, 1, H, W)
    return softmax(model.network.predict(x).astype(np.float64))


def record(item: Item, p: np.ndarray, names: Sequence[str], top_k: int) -> dict[str, Any]:
    label = int(p.argmax())
    out: dict[str, Any] = {"event": "prediction", "input": item.input}
    if item.index is not None:
        out["index"] = item.index
    out |= {
        "label": label,
        "class_name": names[label],
        "confidence": float(p[label]),
        "probabilities": [round(float(v), 6) for v in p],
    }
    if top_k:
        best = np.argsort(-p, kind="stable")[:top_k]
        out["top"] = [
            {"label": int(k), "class_name": names[k], "probability": float(p[k])} for k in best
        ]
    return out


@dataclass(frozen=True)
class PredictRequest:
    """What `bptrain predict` was asked to do."""

    checkpoint: str
    inputs: tuple[str, ...]
    recursive: bool = False
    preprocess: str = "auto"
    top_k: int = 0
    save_preprocessed: str | None = None
    overwrite: bool = False  # may --save-preprocessed replace earlier images
    batch_size: int = 256
    weights: str = "auto"


def predict(
    request: PredictRequest,
    *,
    emit: Callable[[dict[str, Any]], None],
    on_error: Callable[[InputError], None],
    stdin: BinaryIO | None = None,
) -> int:
    """One `prediction` record per image; returns how many were predicted (InputsFailed if any
    input failed, after every other input was predicted)."""
    folder = None  # checked first: a folder that cannot take the images is found before work
    if request.save_preprocessed is not None:
        folder = PreprocessedFolder(Path(request.save_preprocessed), overwrite=request.overwrite)
    model = load_model(request.checkpoint, request.weights)
    style, size = style_for(model, request.preprocess), image_size(model)
    names = model.info.class_names
    failed: list[InputError] = []

    def failure(error: InputError) -> None:
        failed.append(error)
        on_error(error)

    items = read_inputs(request.inputs, recursive=request.recursive, stdin=stdin)
    done = 0
    with folder if folder is not None else contextlib.nullcontext():
        for batch in batches(prepared(items, style, size, failure), request.batch_size):
            # With --save-preprocessed, a record follows its image onto the disk.
            written = folder.save_batch(done, batch) if folder else itertools.repeat(0, len(batch))
            for one, p, _ in zip(batch, probabilities(model, batch), written, strict=True):
                emit(record(one.item, p, names, request.top_k))
                done += 1
    log.info(f"predicted {done} images with {style} preprocessing ({len(failed)} failed)")
    if failed:
        raise InputsFailed(f"{len(failed)} of {done + len(failed)} inputs could not be read")
    return done


def evaluate_images(
    path: str,
    root: str,
    *,
    preprocess: str = "auto",
    weights: str = "auto",
    target_accuracy: float | None = None,
    emit: Callable[[dict[str, Any]], None],
    on_error: Callable[[InputError], None],
) -> dict[str, Any]:
    """`eval` on a folder-per-class tree of the user's own labelled images."""
    from ..run.model import check_target

    model = load_model(path, weights)
    style, size = style_for(model, preprocess), image_size(model)
    pairs = class_folders(Path(root), model.info.class_names)
    labels = dict(pairs)
    failed: list[InputError] = []

    def failure(error: InputError) -> None:
        failed.append(error)
        on_error(error)

    kept = list(prepared(read_inputs([p for p, _ in pairs]), style, size, failure))
    if not kept:
        raise InputsFailed(f"none of the {len(pairs)} images in {root} could be read")
    x = np.stack([k.x for k in kept])[:, None]
    t = np.array([labels[k.item.input] for k in kept], dtype=np.int64)
    result = evaluate(
        model.network, x, t, model.info.num_classes, model.config.train.eval_batch_size
    )
    out = eval_record(model, "images", result) | {"images": str(root)}
    emit(out)
    if failed:
        raise InputsFailed(f"{len(failed)} of {len(pairs)} images could not be read")
    check_target(result.accuracy, target_accuracy, "images")
    return out
