"""load(): the four verified files as float32 images and int64 labels; the validation split."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .cache import PathLike
from .datasets import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, DatasetInfo, get_info
from .download import Transfer
from .fetch import resolve
from .idx import IdxFile

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise
class Dataset:
    """Images (N, 1, H, W) float32 in [0, 1], labels (N,) int64, and where they came from."""

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    checksums: dict[str, str]
    folder: Path

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def load(
    dataset: str | DatasetInfo,
    data_dir: PathLike | None = None,
    *,
    mirrors: tuple[str, ...] | list[str] = (),
    offline: bool | None = None,
    quiet: bool = False,
) -> Dataset:
    """Fetch if needed, verify, and return the dataset as arrays (each file is read once)."""
    info = get_info(dataset)
    transfer = Transfer(quiet=quiet)
    result, files = resolve(
        info, data_dir, mirrors=mirrors, offline=offline, transfer=transfer, want_arrays=True
    )
    _check_splits(info, files)
    num_classes = info.num_classes or _count_classes(info, files)
    class_names = info.class_names or tuple(str(i) for i in range(num_classes))
    return Dataset(
        name=info.name,
        x_train=_images(files.pop(TRAIN_IMAGES)),
        t_train=files.pop(TRAIN_LABELS).data.astype(np.int64),
        x_test=_images(files.pop(TEST_IMAGES)),
        t_test=files.pop(TEST_LABELS).data.astype(np.int64),
        num_classes=num_classes,
        class_names=tuple(class_names),
        checksums={record.name: record.sha256 for record in result.files},
        folder=result.folder,
    )


def _images(idx: IdxFile) -> np.ndarray:
    n, h, w = idx.dims
    x = idx.data.reshape(n, 1, h, w).astype(np.float32)  # (N, H, W) -> (N, 1, H, W)
    x /= 255  # in place: one float32 array, never a float64 temporary
    return x


def _check_splits(info: DatasetInfo, files: dict[str, IdxFile]) -> None:
    """Each split has as many labels as images; train and test images share one size."""
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        n_images, n_labels = files[images].dims[0], files[labels].dims[0]
        if n_images != n_labels:
            raise DataError(
                f"{info.name}: {files[images].path} holds {n_images} images "
                f"but {files[labels].path} holds {n_labels} labels",
                hint="the two files must come from the same dataset",
            )
    train_shape, test_shape = files[TRAIN_IMAGES].dims[1:], files[TEST_IMAGES].dims[1:]
    if train_shape != test_shape:
        raise DataError(
            f"{info.name}: training images are {train_shape[0]}x{train_shape[1]} "
            f"but test images are {test_shape[0]}x{test_shape[1]} in {files[TEST_IMAGES].path}",
            hint="both must come from the same dataset",
        )


def _count_classes(info: DatasetInfo, files: dict[str, IdxFile]) -> int:
    """For unverified data: max label + 1 across train and test, at least two classes."""
    num_classes = 1 + max(int(files[name].data.max()) for name in (TRAIN_LABELS, TEST_LABELS))
    if num_classes < 2:
        path = files[TRAIN_LABELS].path
        raise DataError(
            f"{info.name}: every label is 0 in {path}",
            hint="a classifier needs two or more classes",
        )
    return num_classes


def split_indices(
    n: int, count: int, rng: np.random.Generator, *, limit_train: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) row indices: `count` random rows held out of `n`.

    limit_train keeps a random subset of that many remaining training rows (drawn from the
    same permutation, so it never overlaps the validation set). With count 0 and no limit,
    every row trains and rng is not used.
    """
    count = operator.index(count)
    if not 0 <= count < n:
        raise ConfigError(
            f"validation={count} is out of range for {n} training examples",
            hint=f"use a count from 0 to {n - 1}",
        )
    if limit_train is not None and operator.index(limit_train) < 1:
        raise ConfigError(f"limit_train={limit_train} must be at least 1")
    keep = n - count if limit_train is None else min(limit_train, n - count)
    if count == 0 and keep == n:
        return np.arange(n), np.arange(0)
    order = rng.permutation(n)
    return np.sort(order[count : count + keep]), np.sort(order[:count])


def split_validation(
    x: np.ndarray,
    t: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    limit_train: int | None = None,
) -> tuple[Pair, Pair]:
    """Hold `count` random examples out as ((x_train, t_train), (x_val, t_val)).

    The rows are those of split_indices(); both subsets keep the original order. With count 0
    and no limit the arrays come back as they are and rng is not used.
    """
    n = len(x)
    if len(t) != n:
        raise DataError(f"{n} images but {len(t)} labels", hint="pass matching arrays")
    train, val = split_indices(n, count, rng, limit_train=limit_train)
    if len(train) == n:
        return (x, t), (x[:0], t[:0])
    return (x[train], t[train]), (x[val], t[val])
