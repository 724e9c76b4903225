"""From a validated config to a ready run: data, split, network, optimizer, schedule, resume."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import checkpoint
from .config import Config
from .errors import CheckpointError, ConfigError
from .network import Network
from .optimizers import OPTIMIZERS, Optimizer
from .schedules import SCHEDULES, Schedule
from .train import Arrays, TrainState


def draw_seed() -> int:
    """A fresh seed for runs whose config says `seed: null`; it is logged and recorded."""
    return secrets.randbelow(2**31)


def load_dataset(
    config: Config,
    *,
    data_dir: str | None = None,
    mirrors: Sequence[str] = (),
    offline: bool | None = None,
    quiet: bool = False,
) -> Any:
    """The config's dataset; the command line's folder and mirrors come before the config's."""
    from . import data

    return data.load(
        config.data.dataset,
        data_dir if data_dir is not None else config.data.dir,
        mirrors=[*mirrors, *config.data.mirrors],
        offline=offline,
        quiet=quiet,
    )


@dataclass
class Run:
    """Everything a training or evaluation run works with."""

    config: Config
    seed: int
    rng: np.random.Generator
    dataset: Any
    train_rows: np.ndarray  # rows of dataset.x_train that are trained on
    val: Arrays
    test: Arrays
    network: Network
    optimizer: Optimizer
    schedule: Schedule | None
    state: TrainState

    @property
    def all_train(self) -> Arrays:
        """The loaded training arrays (validation rows included; see train_rows)."""
        return self.dataset.x_train, self.dataset.t_train

    @property
    def train(self) -> Arrays:
        """A copy of the rows trained on (for evaluating on them)."""
        return self.dataset.x_train[self.train_rows], self.dataset.t_train[self.train_rows]

    def meta(self, **extra: Any) -> dict[str, Any]:
        """Checkpoint metadata: enough to rebuild the model and its data from the file alone."""
        return {
            "config": self.config.to_dict() | {"seed": self.seed},
            "seed": self.seed,
            "input_shape": list(self.network.input_shape),
            "num_classes": int(self.dataset.num_classes),
            "class_names": list(self.dataset.class_names),
            "data": {
                "dataset": self.dataset.name,
                "checksums": dict(self.dataset.checksums),
                "folder": str(self.dataset.folder),
            },
            **extra,
        }


def prepare(config: Config, seed: int, dataset: Any) -> Run:
    """Split, build and initialize in a fixed order from one generator seeded with `seed`.

    The order (validation split, then weights, then shuffling and dropout while training) is
    what makes a resumed or re-evaluated run see exactly the data and weights of the original.
    """
    from .data import split_indices

    rng = np.random.default_rng(seed)
    n = dataset.x_train.shape[0]
    if config.data.validation >= n:
        raise ConfigError(
            f"must be smaller than the training set ({n} samples), got {config.data.validation}",
            path="data.validation",
        )
    # Training reads its rows straight from the loaded array: no second copy of the images.
    rows, val_rows = split_indices(
        n, config.data.validation, rng, limit_train=config.data.limit_train
    )
    val = (dataset.x_train[val_rows], dataset.t_train[val_rows])
    network = Network.from_specs(
        config.model.layers,
        dataset.x_train.shape[1:],
        config.model.loss,
        rng=rng,
        num_classes=dataset.num_classes,
    )
    optimizer = OPTIMIZERS.build(config.optimizer, "optimizer")
    schedule = (
        SCHEDULES.build(config.train.schedule, "train.schedule") if config.train.schedule else None
    )
    return Run(
        config,
        seed,
        rng,
        dataset,
        rows,
        val,
        (dataset.x_test, dataset.t_test),
        network,
        optimizer,
        schedule,
        TrainState(),
    )


def check_same_data(run: Run, ckpt: checkpoint.Checkpoint) -> None:
    """Refuse to resume on data files other than the ones the checkpoint was trained on."""
    stored = ckpt.meta.get("data", {}).get("checksums", {})
    if stored and stored != dict(run.dataset.checksums):
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained on other {run.dataset.name} files than the ones "
            f"in {run.dataset.folder}",
            hint="point --data-dir at the original files",
        )


def resume(ckpt: checkpoint.Checkpoint, run: Run) -> None:
    """Load weights, optimizer, generator and loop state so training continues exactly."""
    check_same_data(run, ckpt)
    run.state = checkpoint.restore_training(ckpt, run.network, run.optimizer, run.rng)
    order = run.state.order
    if order is not None and (order.ndim != 1 or order.shape[0] != len(run.train_rows)):
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its sample order does not fit the training set",
            hint="was it written for another config?",
        )
