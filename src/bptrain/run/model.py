"""A trained model: rebuilt from its checkpoint alone, evaluated, and judged against a target.

`serve`, `predict`, `summary` and `graph` load models here; nothing in this module trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..engine.network import Network
from ..engine.train import Arrays, evaluate
from ..errors import CheckFailed, CheckpointError, ConfigError
from . import checkpoint
from .checkpoint import Checkpoint, RunInfo
from .inputs import (
    NO_DATA_OPTIONS,
    DataOptions,
    check_fits,
    check_same_data,
    config_of,
    load_dataset,
    split_rows,
    with_stored_folder,
)
from .restore import restore_network

log = logging.getLogger(__name__)


def config_of_checkpoint(ckpt: Checkpoint) -> Config:
    """The checkpoint's stored config, validated; an unusable one is the checkpoint's fault.

    Its own layers are registered first, from the files the user gave with --layers only
    (checked against the recorded SHA-256 before they are imported): never from the checkpoint.
    """
    from ..custom.registration import admit_checkpoint

    info = ckpt.info
    admit_checkpoint(info.config, info.layer_sources, f"checkpoint {ckpt.path}")
    try:
        return config_of(str(ckpt.path), raw=ckpt.info.config).config
    except ConfigError as error:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its stored config is unusable ({error})"
        ) from None


@dataclass
class Model:
    """A trained network rebuilt from its checkpoint alone, with the weights chosen."""

    ckpt: Checkpoint
    config: Config
    network: Network
    weights: str  # "last", "best" or "ema"

    @property
    def info(self) -> RunInfo:
        return self.ckpt.info


def load_model(path: str, weights: str = "auto") -> Model:
    """The checkpoint's network with its last, best or (auto) summary weights."""
    ckpt = checkpoint.load(path)
    config, info = config_of_checkpoint(ckpt), ckpt.info
    network = Network.from_specs(
        config.model.layers, info.input_shape, config.model.loss, num_classes=info.num_classes
    )
    chosen = ckpt.weights if weights == "auto" else weights
    restore_network(network, ckpt, chosen)
    if not ckpt.complete:
        log.warning(
            f"{path} is the checkpoint of an unfinished run ({ckpt.epochs} of "
            f"{config.train.epochs} epochs); continue it with: bptrain train --resume {path}"
        )
    return Model(ckpt, config, network, chosen)


def eval_record(model: Model, split: str, result: Any) -> dict[str, Any]:
    """The `eval` record of a result, with the per-class table logged beside it."""
    info = model.info
    _log_per_class(info.class_names, result.per_class_accuracy, result.confusion.sum(axis=1))
    return {
        "event": "eval",
        "split": split,
        "n": result.n,
        "loss": result.loss,
        "accuracy": result.accuracy,
        "class_names": list(info.class_names),
        "per_class_accuracy": result.per_class_accuracy,
        "confusion_matrix": result.confusion.tolist(),
        "checkpoint": str(model.ckpt.path),
        "weights": model.weights,
        "epochs": model.ckpt.epochs,
        "complete": model.ckpt.complete,
    }


def evaluate_checkpoint(
    path: str,
    *,
    split: str = "test",
    weights: str = "auto",
    data: DataOptions = NO_DATA_OPTIONS,
    target_accuracy: float | None = None,
    emit: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Score a checkpoint on one split; the model is rebuilt from the checkpoint alone."""
    model = load_model(path, weights)
    ckpt, config = model.ckpt, model.config
    # The test split needs only the two test files: no training set in memory.
    splits = ("test",) if split == "test" else ("train", "test")
    dataset = load_dataset(config, with_stored_folder(data, config, ckpt), splits=splits)
    check_fits(ckpt, dataset)
    if not check_same_data(ckpt, dataset):
        log.warning(f"{path} was trained on other {dataset.name} files than these")
    x, t = _split_arrays(config, model.info.seed, dataset, split)
    result = evaluate(model.network, x, t, model.info.num_classes, config.train.eval_batch_size)
    record = eval_record(model, split, result)
    record["checkpoint"] = path
    emit(record)
    check_target(result.accuracy, target_accuracy, split)
    return record


def _split_arrays(config: Config, seed: int, dataset: Any, split: str) -> Arrays:
    """The rows of one split, drawn exactly as training drew them."""
    if split == "test":
        return dataset.x_test, dataset.t_test
    rows, val_rows = split_rows(config, dataset.x_train.shape[0], np.random.default_rng(seed))
    chosen = val_rows if split == "validation" else rows
    if len(chosen) == 0:
        raise ConfigError(
            f"the {split} split is empty (data.validation is 0)", hint="evaluate another --split"
        )
    return dataset.x_train[chosen], dataset.t_train[chosen]


def _log_per_class(names: Sequence[str], accuracies: Sequence[float | None], counts: Any) -> None:
    width = max(len(name) for name in names)
    for name, accuracy, n in zip(names, accuracies, counts, strict=True):
        shown = f"{accuracy:.2%}" if accuracy is not None else "-"
        log.info(f"  {name:<{width}}  {shown:>7}  of {n}")


def check_target(accuracy: float, target: float | None, split: str) -> None:
    """CheckFailed (exit 1) when an accuracy target was given and missed."""
    if target is not None and accuracy < target:
        raise CheckFailed(f"{split} accuracy {accuracy:.4f} is below the target {target:.4f}")


def seconds_to_target(history: Sequence[dict[str, Any]], target: float) -> float | None:
    """The run's clock when validation accuracy first reached `target` (None: it never did)."""
    for record in history:
        accuracy = record.get("val_accuracy")
        if accuracy is not None and accuracy >= target:
            return record.get("wall_seconds")
    return None
