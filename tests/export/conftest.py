"""Checkpoints to export: every preset and a user-style config using every exportable layer,
each trained one short epoch on the synthetic `idx` digits (tests/conftest.py's idx_folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bptrain.config import preset_names
from bptrain.functional import softmax
from bptrain.run.model import load_model
from cli_helpers import invoke, write_config

PRESETS = tuple(preset_names())

# A config a user might write: every layer type export maps, with settings the presets never
# use (stride 2 and padding 1, a 3x3 average pool every 2 pixels, an overlapping max-pool,
# Affine straight on an image, BatchNorm on features with its own eps, LeakyRelu's alpha).
EVERY_LAYER = [
    {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": 1, "init": "xavier"},
    {"type": "leaky_relu", "alpha": 0.1},
    {"type": "avg_pool2d", "size": 3, "stride": 2},
    {"type": "batch_norm", "momentum": 0.8},
    {"type": "tanh"},
    {"type": "max_pool2d", "size": 2, "stride": 1},
    {"type": "affine", "units": 16},
    {"type": "batch_norm", "eps": 0.001},
    {"type": "sigmoid"},
    {"type": "dropout", "rate": 0.2},
    {"type": "affine", "units": 10},
]


def short_run(preset: str, folder: Path) -> list[str]:
    """--set options that train a preset one short epoch on the synthetic digits in `folder`."""
    return [
        "--set", "data.dataset=idx", "--set", f"data.dir={folder}",
        "--set", "data.validation=100", "--set", "data.limit_train=300",
        "--set", "train.epochs=1", "--set", "data.augment=[]",
    ]  # fmt: skip


def train(source: str | Path, out: Path, folder: Path, *extra: str) -> Path:
    result = invoke("-q", "train", source, *short_run(str(source), folder), *extra, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory, idx_folder) -> dict[str, Path]:
    """name -> checkpoint: each preset, and `every-layer` (the user-style config)."""
    folder = tmp_path_factory.mktemp("trained")
    runs = {name: train(name, folder / f"{name}.npz", idx_folder) for name in PRESETS}
    config = {
        "seed": 5,
        "data": {"dataset": "idx"},
        "model": {"layers": EVERY_LAYER, "loss": "softmax_with_loss"},
        "optimizer": {"type": "adam", "lr": 0.003},
        "train": {"epochs": 1, "batch_size": 50},
    }
    source = write_config(folder / "every-layer.yaml", config)
    runs["every-layer"] = train(source, folder / "every-layer.npz", idx_folder)
    return runs


def _bptrain_probabilities(checkpoint: Path, x: np.ndarray, weights: str = "auto") -> np.ndarray:
    """What bptrain's own forward pass gives for `x` (in float64, as predict's softmax)."""
    network = load_model(str(checkpoint), weights).network
    return softmax(network.predict(x).astype(np.float64))


def _pixels(n: int, shape=(1, 28, 28), seed: int = 1) -> np.ndarray:
    """n seeded images in [0, 1], half of their pixels black, like digits' backgrounds."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    return x


# Helpers the test modules share (tests/export/ is not on the import path: fixtures carry them).
@pytest.fixture(scope="session")
def forward():
    return _bptrain_probabilities


@pytest.fixture(scope="session")
def pixels():
    return _pixels
