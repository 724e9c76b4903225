"""A run's inputs: its config, its data, and the run built from them in a fixed order.

`prepare` splits, builds and initializes from one generator, so a resumed or re-evaluated run
sees exactly the data and weights of the original; `resume` puts a checkpoint's state back.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..accel import kernels
from ..config import Config, LoadedConfig, load_config
from ..data import augment
from ..engine.averaging import WeightAverage
from ..engine.network import Network
from ..engine.optimizers import OPTIMIZERS, Optimizer
from ..engine.schedules import SCHEDULES, Schedule
from ..engine.train import Arrays, TrainState
from ..errors import CheckpointError, ConfigError
from .checkpoint import Checkpoint, RunInfo
from .restore import restore_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataOptions:
    """Where the data is: the command line's folder and mirrors come before the config's."""

    data_dir: str | None = None
    mirrors: tuple[str, ...] = ()
    offline: bool | None = None  # None: ask BPTRAIN_OFFLINE


NO_DATA_OPTIONS = DataOptions()  # the command line named no folder or mirror: the config's


def draw_seed() -> int:
    """A fresh seed for runs whose config says `seed: null`; it is logged and recorded."""
    return secrets.randbelow(2**31)


def config_of(
    name: str | None,
    overrides: Sequence[str] = (),
    *,
    read_stdin: Callable[[], str] = lambda: "",
    raw: dict[str, Any] | None = None,
) -> LoadedConfig:
    """A validated config from a file, '-', a preset, or a checkpoint's stored `raw` config.

    A config the user gives may name their own layers (`my_layers.py:Relu`, an installed entry
    point): they are imported and registered first. A stored config imports nothing: its
    layers come in through the checkpoint's gate (custom.registration.admit_checkpoint).
    """
    from ..custom.registration import admit_config
    from .parts import PARTS  # the registries a config names (imports the whole engine)

    return load_config(
        name, tuple(overrides), parts=PARTS, stdin_text=read_stdin, raw=raw,
        admit=admit_config if raw is None else None,
    )  # fmt: skip


def load_dataset(config: Config, data: DataOptions = NO_DATA_OPTIONS, **extra: Any) -> Any:
    """The config's dataset; the command line's folder and mirrors come before the config's."""
    from .. import data as data_layer

    return data_layer.load(
        config.data.dataset,
        data.data_dir if data.data_dir is not None else config.data.dir,
        mirrors=[*data.mirrors, *config.data.mirrors],
        offline=data.offline,
        quiet=not log.isEnabledFor(logging.INFO),
        **extra,
    )


def with_stored_folder(data: DataOptions, config: Config, ckpt: Checkpoint) -> DataOptions:
    """Look for the data where the run trained, unless told otherwise (load() still verifies)."""
    folder = ckpt.info.folder
    if data.data_dir is None and config.data.dir is None and folder and Path(folder).is_dir():
        return replace(data, data_dir=folder)
    return data


def data_shape(cfg: Config, data: DataOptions) -> tuple[tuple[int, ...], int]:
    """Input shape and class count; known datasets need no files, `idx` reads its folder."""
    from ..data import DATASETS

    info = DATASETS[cfg.data.dataset]
    if info.image_shape is not None and info.num_classes is not None:
        return (1, *info.image_shape), info.num_classes
    dataset = load_dataset(
        cfg, replace(data, offline=True if data.offline is None else data.offline)
    )
    return tuple(dataset.x_train.shape[1:]), int(dataset.num_classes)


def check_stack(loaded: LoadedConfig, data: DataOptions) -> Network | None:
    """Build the config's network for its data's shape: a layer that cannot take its input
    (conv2d after flatten) fails here, naming the layer, not after the data has loaded.
    Returns the network (None when its shape is only known once the data has loaded)."""
    from ..data import DATASETS

    cfg = loaded.config
    if DATASETS[cfg.data.dataset].image_shape is None and (data.data_dir or cfg.data.dir) is None:
        return None  # an `idx` folder's shape is only known from its files; train checks it
    input_shape, classes = data_shape(cfg, data)
    try:
        return Network.from_specs(
            cfg.model.layers, input_shape, cfg.model.loss, num_classes=classes
        )
    except ConfigError as error:
        raise loaded.locate(error) from None


@dataclass
class Run:
    """Everything a training run works with."""

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
    state: TrainState = field(default_factory=TrainState)
    name: str | None = None  # the preset or config file's name
    augmenter: augment.Augmenter | None = None  # data.augment's transforms for this dataset
    init_from: dict[str, str] | None = None  # where its first weights came from (--init-from)

    @property
    def all_train(self) -> Arrays:
        """The loaded training arrays (validation rows included; see train_rows)."""
        return self.dataset.x_train, self.dataset.t_train

    @property
    def info(self) -> RunInfo:
        """What the checkpoint records: enough to rebuild the model and its data from the file."""
        from ..custom.registration import sources_of

        return RunInfo(
            config=self.config.to_dict() | {"seed": self.seed},
            seed=self.seed,
            input_shape=tuple(self.network.input_shape),
            num_classes=int(self.dataset.num_classes),
            class_names=tuple(self.dataset.class_names),
            dataset=self.dataset.name,
            checksums=dict(self.dataset.checksums),
            folder=str(self.dataset.folder),
            name=self.name,
            init_from=self.init_from,
            layer_sources=sources_of(self.network.layers),
        )


def split_rows(config: Config, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) rows of the training file, the first draws of the run's generator."""
    from ..data import split_indices

    if config.data.validation >= n:
        raise ConfigError(
            f"must be smaller than the training set ({n} samples), got {config.data.validation}",
            path="data.validation",
        )
    return split_indices(n, config.data.validation, rng, limit_train=config.data.limit_train)


def prepare(config: Config, seed: int, dataset: Any) -> Run:
    """Split, build and initialize in a fixed order from one generator seeded with `seed`.

    The order (validation split, then weights, then shuffling and dropout while training) is
    what makes a resumed or re-evaluated run see exactly the data and weights of the original.
    """
    rng = np.random.default_rng(seed)
    # Training reads its rows straight from the loaded array: no second copy of the images.
    rows, val_rows = split_rows(config, dataset.x_train.shape[0], rng)
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
    val = (dataset.x_train[val_rows], dataset.t_train[val_rows])
    test = (dataset.x_test, dataset.t_test)
    run = Run(config, seed, rng, dataset, rows, val, test, network, optimizer, schedule)
    run.augmenter = augment.build(config.data.augment, dataset.name)
    if config.train.ema is not None:
        run.state.ema = WeightAverage(config.train.ema, network.arrays)
    return run


def check_fits(ckpt: Checkpoint, dataset: Any) -> None:
    """The data must have the image shape and classes the checkpoint's network was built for."""
    info = ckpt.info
    x = dataset.x_test if dataset.x_test.size else dataset.x_train
    shape, classes = tuple(x.shape[1:]), int(dataset.num_classes)
    # With only the test files loaded, an `idx` dataset counts the classes its test labels use.
    partial = dataset.x_train.shape[0] == 0
    fewer_ok = partial and classes <= info.num_classes
    if shape != info.input_shape or (classes != info.num_classes and not fewer_ok):
        raise CheckpointError(
            f"{ckpt.path} was trained on {_dims(info.input_shape)} images with "
            f"{info.num_classes} classes; {dataset.folder} has {_dims(shape)} images with "
            f"{classes} classes",
            hint="point --data-dir at the data it was trained on",
        )


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def check_same_data(ckpt: Checkpoint, dataset: Any) -> bool:
    """True when the loaded files are the ones the checkpoint was trained on (as far as known)."""
    stored = ckpt.info.checksums
    return all(stored.get(name, sha) == sha for name, sha in dataset.checksums.items())


def resume(ckpt: Checkpoint, run: Run) -> None:
    """Load weights, optimizer, generator and loop state so training continues exactly."""
    if not check_same_data(ckpt, run.dataset):
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained on other {run.dataset.name} files than the ones "
            f"in {run.dataset.folder}",
            hint="point --data-dir at the original files",
        )
    _note_other_kernels(ckpt)
    train = run.config.train
    run.state = restore_training(
        ckpt, run.network, run.optimizer, run.rng, run.train_rows, train.batch_size, train.ema
    )
    run.name = ckpt.info.name
    run.init_from = ckpt.info.init_from  # a resumed run goes on recording where it started


def _note_other_kernels(ckpt: Checkpoint) -> None:
    """The compiled loops and NumPy round differently: a run resumed under the other choice
    trains on correctly, but not to the bits an uninterrupted run would have."""
    started, now = ckpt.meta.get("kernels"), kernels.kind()
    if started is not None and started != now:
        log.warning(
            f"{ckpt.path} was trained with the {started} kernels and resumes with the {now} "
            f"ones: training goes on, with other rounding than an uninterrupted run "
            f"(BPTRAIN_KERNELS={started} resumes exactly)"
        )
