"""Shared fixtures: a private data cache for every test, a small learnable synthetic dataset
written as real IDX files (by data_helpers, the one IDX writer), isolation, real datasets."""

import sys
from pathlib import Path

import pytest

_COMPILED = pytest.StashKey[object]()  # (accel folder, saved set) when the numba cache is kept


def pytest_sessionstart(session):
    """Bring in the numba loops an earlier session compiled (see compiled_cache)."""
    from compiled_cache import accel_folder, restore, store_for, store_root

    root, accel = store_root(), accel_folder()
    store = store_for(accel, root) if root and accel else None
    session.config.stash[_COMPILED] = (accel, store) if store else None
    if store:
        try:
            restore(accel, store)
        except OSError as error:  # a read-only tree or cache: the loops compile as before
            print(f"compiled_cache: not restored ({error})", file=sys.stderr)


def pytest_sessionfinish(session):
    """Keep this session's numba loops for the next one, in whichever clone it runs."""
    from compiled_cache import save

    where = session.config.stash.get(_COMPILED, None)
    if where:
        try:
            save(*where)
        except OSError as error:
            print(f"compiled_cache: not saved ({error})", file=sys.stderr)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """No test reads or fills the user's real cache (~/.cache/bptrain)."""
    monkeypatch.setenv("BPTRAIN_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("BPTRAIN_MIRROR", raising=False)
    monkeypatch.delenv("BPTRAIN_OFFLINE", raising=False)


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory) -> Path:
    """A read-only-by-convention synthetic `idx` dataset shared by the CLI tests."""
    from data_helpers import make_idx_dataset

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
    from data_helpers import FASHION_COPY

    if not (FASHION_COPY / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST copy at {FASHION_COPY}")
    return FASHION_COPY


@pytest.fixture
def mnist_folder() -> Path:
    """The real MNIST copy beside the repository; skips when it is not there."""
    from data_helpers import MNIST_COPY

    if not (MNIST_COPY / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST copy at {MNIST_COPY}")
    return MNIST_COPY


@pytest.fixture
def config_file(tmp_path, idx_folder):
    """A quick MLP config (cli_helpers.small_config) on the synthetic idx data, as a file."""
    from cli_helpers import small_config, write_config

    return write_config(tmp_path / "small.yaml", small_config(idx_folder))
