"""Shared fixtures: a small, learnable synthetic dataset written as real IDX files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

SHARED_FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
SHARED_MNIST = SHARED_FASHION.parent / "mnist"


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file (magic 0x08 + ndim, big-endian dims, payload)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload, mtime=0))
    else:
        path.write_bytes(payload)


def make_idx_dataset(
    folder: Path,
    n_train: int = 600,
    n_test: int = 200,
    classes: int = 10,
    seed: int = 0,
    size: int = 28,
) -> Path:
    """Four IDX files of noisy class templates: easy to learn, hard to memorize by accident."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((classes, size, size)) < 0.2) * 255.0  # sparse strokes, like digits
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        noise = rng.normal(0, 40, (n, size, size))
        images = np.clip(templates[labels] * 0.7 + noise, 0, 255).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """No test reads or fills the user's real cache (~/.cache/bptrain)."""
    monkeypatch.setenv("BPTRAIN_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("BPTRAIN_MIRROR", raising=False)
    monkeypatch.delenv("BPTRAIN_OFFLINE", raising=False)


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory) -> Path:
    """A read-only-by-convention synthetic `idx` dataset shared by the CLI tests."""
    return make_idx_dataset(tmp_path_factory.mktemp("idx-data"))


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No BPTRAIN_* settings or proxies leak into data tests; a throwaway XDG cache."""
    from data_helpers import isolate_env

    isolate_env(monkeypatch, tmp_path)


@pytest.fixture
def server():
    """A loopback HTTP server (data_helpers.LoopbackServer) for the test's duration."""
    from data_helpers import LoopbackServer

    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def fashion_folder() -> Path:
    """The real Fashion-MNIST copy beside the repository; skips when it is not there."""
    if not (SHARED_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST copy at {SHARED_FASHION}")
    return SHARED_FASHION


@pytest.fixture
def mnist_folder() -> Path:
    """The real MNIST copy beside the repository; skips when it is not there."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST copy at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture
def config_file(tmp_path, idx_folder):
    """A quick MLP config (cli_helpers.small_config) on the synthetic idx data, as a file."""
    from cli_helpers import small_config, write_config

    return write_config(tmp_path / "small.yaml", small_config(idx_folder))
