"""load() and split_validation(); the dataset table; real Fashion-MNIST in opt-in slow tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bptrain.data import DATASETS, FILE_NAMES, fetch, load, split_validation
from bptrain.errors import ConfigError, DataError
from data_helpers import (
    FASHION_COPY,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    LoopbackServer,
    files_in,
    make_info,
    serve,
    sha256,
    synthetic_files,
    write_files,
)

# Larger than data_helpers.FILES: twelve training images leave room to split and slice them.
FILES = synthetic_files(n_train=12, n_test=5)
INFO = make_info(FILES)


def pixels(name: str) -> np.ndarray:
    """The uint8 pixels of a synthetic images file, (N, H, W)."""
    raw = FILES[name]
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


def labels(name: str) -> np.ndarray:
    return np.frombuffer(FILES[name], np.uint8, offset=8)


# ---------------------------------------------------------------- load


def test_load_returns_float_images_and_int_labels(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "synth", FILES)
    data = load(INFO, tmp_path, offline=True)
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (5, 1, 28, 28)
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.t_train.dtype == np.int64 and data.t_test.dtype == np.int64
    np.testing.assert_array_equal(data.x_train[:, 0] * 255, pixels(TRAIN_IMAGES))
    np.testing.assert_array_equal(data.x_test[:, 0] * 255, pixels(TEST_IMAGES))
    np.testing.assert_array_equal(data.t_train, labels(TRAIN_LABELS))
    np.testing.assert_array_equal(data.t_test, labels(TEST_LABELS))
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert data.x_train.flags.writeable  # a real array, not a view on read-only bytes
    assert data.num_classes == 10 and data.name == "synth" and data.folder == folder
    assert data.checksums == {name: sha256(FILES[name]) for name in FILE_NAMES}


def test_load_downloads_what_is_missing(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        data = load(INFO, tmp_path, mirrors=[server.mirror("m1", FILES)], quiet=True)
        assert len(server.seen) == 4
    np.testing.assert_array_equal(data.t_train, labels(TRAIN_LABELS))


def test_load_only_the_test_split(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "synth", FILES)
    (folder / f"{TRAIN_IMAGES}.gz").write_bytes(b"never read")  # proves train is not read
    (folder / f"{TRAIN_LABELS}.gz").unlink()
    data = load(INFO, tmp_path, offline=True, splits=("test",))
    assert data.x_train.shape == (0, 1, 28, 28) and data.x_train.dtype == np.float32
    assert data.t_train.shape == (0,) and data.t_train.dtype == np.int64
    np.testing.assert_array_equal(data.x_test[:, 0] * 255, pixels(TEST_IMAGES))
    np.testing.assert_array_equal(data.t_test, labels(TEST_LABELS))
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    assert data.checksums == {name: sha256(FILES[name]) for name in (TEST_IMAGES, TEST_LABELS)}


def test_load_of_one_split_downloads_only_its_files(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        mirror = server.mirror("m1", FILES)
        data = load(INFO, tmp_path, mirrors=[mirror], quiet=True, splits=["test"])
        assert sorted(s.path for s in server.seen) == sorted(f"/m1/{n}.gz" for n in FILE_NAMES[2:])
        assert files_in(tmp_path / "synth") == sorted(f"{n}.gz" for n in FILE_NAMES[2:])
        train = load(INFO, tmp_path, mirrors=[mirror], quiet=True, splits=("train",))
        assert len(server.seen) == 4
    assert len(data.t_test) == 5 and len(data.t_train) == 0
    assert len(train.t_train) == 12 and train.x_test.shape == (0, 1, 28, 28)


@pytest.mark.parametrize("splits", [(), ("validation",), ("test", "tset")])
def test_load_rejects_unknown_splits(tmp_path: Path, splits: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="split"):
        load(INFO, tmp_path, offline=True, splits=splits)


def test_class_names() -> None:
    assert DATASETS["mnist"].class_names == tuple("0123456789")
    assert DATASETS["fashion-mnist"].class_names == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


def test_dataset_table_matches_datasets_md() -> None:
    mnist, fashion = DATASETS["mnist"], DATASETS["fashion-mnist"]
    assert mnist.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert mnist.mirrors[-1] == "http://yann.lecun.com/exdb/mnist/"  # last resort
    assert fashion.mirrors[0].startswith("https://raw.githubusercontent.com/zalandoresearch/")
    sizes = [47_040_016, 60_008, 7_840_016, 10_008]
    for info in (mnist, fashion):
        assert [spec.name for spec in info.files] == list(FILE_NAMES)
        assert [spec.size for spec in info.files] == sizes
        assert info.image_shape == (28, 28) and info.num_classes == 10 and info.verified
    assert mnist.spec(TRAIN_IMAGES).sha256 == (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    )
    assert fashion.spec(TEST_LABELS).sha256 == (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    )
    assert fashion.spec(TRAIN_IMAGES).gz_size == 26_421_880
    assert not DATASETS["idx"].verified and DATASETS["idx"].mirrors == ()


# ---------------------------------------------------------------- split_validation


def numbered(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose single pixel is their index, so every example is identifiable."""
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    return x, np.arange(n, dtype=np.int64) % 10


def test_split_is_a_seeded_partition() -> None:
    x, t = numbered(100)
    (xt, tt), (xv, tv) = split_validation(x, t, 30, np.random.default_rng(0))
    assert len(xt) == 70 and len(xv) == 30
    ids_train, ids_val = xt.ravel().astype(int), xv.ravel().astype(int)
    assert sorted([*ids_train, *ids_val]) == list(range(100))
    np.testing.assert_array_equal(tt, t[ids_train])
    np.testing.assert_array_equal(tv, t[ids_val])
    assert list(ids_val) != list(range(30))  # random, not a prefix
    assert list(ids_train) == sorted(ids_train)  # original order kept


def test_split_depends_on_the_generator_only() -> None:
    x, t = numbered(100)
    np.random.seed(1)
    a = split_validation(x, t, 10, np.random.default_rng(5))[1][0]
    np.random.seed(2)  # the global RNG must play no part
    b = split_validation(x, t, 10, np.random.default_rng(5))[1][0]
    c = split_validation(x, t, 10, np.random.default_rng(6))[1][0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_zero_gives_empty_validation_arrays() -> None:
    x, t = numbered(10)
    (xt, tt), (xv, tv) = split_validation(x, t, 0, np.random.default_rng(0))
    assert xt is x and tt is t
    assert xv.shape == (0, 1, 1, 1) and tv.shape == (0,) and tv.dtype == np.int64


def test_limit_train_after_the_split() -> None:
    x, t = numbered(100)
    (xt, _), (xv, _) = split_validation(x, t, 20, np.random.default_rng(0), limit_train=15)
    assert len(xt) == 15 and len(xv) == 20
    assert not set(xt.ravel()) & set(xv.ravel())
    (full, _), (same_val, _) = split_validation(x, t, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(xv, same_val)  # the limit does not change the validation set
    assert set(xt.ravel()) <= set(full.ravel())
    (xt, _), _ = split_validation(x, t, 0, np.random.default_rng(0), limit_train=1000)
    assert len(xt) == 100


@pytest.mark.parametrize(("count", "limit"), [(-1, None), (100, None), (5, 0)])
def test_split_rejects_bad_counts(count: int, limit: int | None) -> None:
    x, t = numbered(100)
    with pytest.raises(ConfigError):
        split_validation(x, t, count, np.random.default_rng(0), limit_train=limit)


# ---------------------------------------------------------------- real Fashion-MNIST (slow)

needs_copy = pytest.mark.skipif(
    not (FASHION_COPY / f"{TRAIN_IMAGES}.gz").is_file(),
    reason=f"no Fashion-MNIST copy at {FASHION_COPY}",
)


@pytest.fixture
def fashion_server() -> Iterator[tuple[LoopbackServer, str]]:
    with LoopbackServer() as server:
        for name in FILE_NAMES:
            body = (FASHION_COPY / f"{name}.gz").read_bytes()
            server.routes[f"/fashion/{name}.gz"] = serve(body)
        yield server, server.url + "fashion/"


@pytest.mark.slow
@needs_copy
def test_fetch_real_fashion_mnist_over_loopback(
    fashion_server: tuple[LoopbackServer, str], tmp_path: Path
) -> None:
    server, mirror = fashion_server
    result = fetch("fashion-mnist", tmp_path, mirrors=[mirror], quiet=True, backoff=0)
    expected = [spec.sha256 for spec in DATASETS["fashion-mnist"].files]
    assert [f.sha256 for f in result.files] == expected
    assert [f.source for f in result.files] == [f"{mirror}{n}.gz" for n in FILE_NAMES]
    assert fetch("fashion-mnist", tmp_path, offline=True).files[0].source == "cache"
    assert len(server.seen) == 4
    assert not [n for n in files_in(tmp_path / "fashion-mnist") if n.endswith(".part")]


@pytest.mark.slow
@needs_copy
def test_load_real_fashion_mnist_in_place() -> None:
    data = load("fashion-mnist", FASHION_COPY, offline=True)
    assert data.folder == FASHION_COPY
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.x_train.dtype == np.float32 and data.t_train.dtype == np.int64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert np.bincount(data.t_train).tolist() == [6000] * 10
    assert np.bincount(data.t_test).tolist() == [1000] * 10
    assert data.class_names[9] == "Ankle boot"


@pytest.mark.slow
@needs_copy
def test_wrong_dataset_in_place_is_caught() -> None:
    with pytest.raises(DataError) as info:
        load("mnist", FASHION_COPY, offline=True)
    message = str(info.value)
    assert "these are the fashion-mnist files (their checksums match)" in message
    assert "--set data.dataset=fashion-mnist" in message and "delete" not in message
