"""The network that `graph` and `summary` look at: from a config (built, never trained) or a
checkpoint (with its trained weights), without loading any data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..engine.network import Network
from ..errors import ConfigError
from ..run.inputs import DataOptions, config_of, data_shape
from ..run.model import Model, load_model

ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class Source:
    """A network and what titles say about it."""

    network: Network
    config: Config
    name: str  # the preset, config file or checkpoint it came from
    dataset: str
    model: Model | None = None  # set for a checkpoint: its weights, config and data folder

    @property
    def label(self) -> str:
        return f"{self.name} ({self.dataset})"


def is_checkpoint(source: str) -> bool:
    """A file that starts like a zip archive (an .npz), whatever its name."""
    path = Path(source)
    if source == "-" or not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(4) == ZIP_MAGIC


def load_source(
    source: str | None,
    overrides: Sequence[str] = (),
    *,
    weights: str = "auto",
    data: DataOptions | None = None,
    read_stdin: Callable[[], str] = lambda: "",
) -> Source:
    """A checkpoint's trained network, or a config's network with its seeded initial weights."""
    if source is not None and is_checkpoint(source):
        if overrides:
            raise ConfigError(
                "--set changes a config; a checkpoint's network is fixed",
                hint="give the config instead, or leave out --set",
            )
        model = load_model(source, weights)
        info = model.info
        name = info.name or Path(source).stem
        return Source(model.network, model.config, name, info.dataset, model)
    loaded = config_of(source, overrides, read_stdin=read_stdin)
    cfg = loaded.config
    input_shape, classes = data_shape(cfg, data or DataOptions())
    rng = np.random.default_rng(cfg.seed if cfg.seed is not None else 0)
    try:
        network = Network.from_specs(
            cfg.model.layers, input_shape, cfg.model.loss, rng=rng, num_classes=classes
        )
    except ConfigError as error:
        raise loaded.locate(error) from None
    return Source(network, cfg, loaded.name, cfg.data.dataset)
