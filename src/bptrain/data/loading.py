"""load(): the four verified files as float32 images and int64 labels; the validation split."""

from __future__ import annotations

import operator
from collections.abc import Sequence
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
    """Images (N, 1, H, W) float32 in [0, 1], labels (N,) int64, and where they came from.

    A split that load(splits=...) skipped has N = 0 (same trailing shape), and `checksums`
    then names only the files that were read.
    """

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


# The files of each split, as load(splits=...) names them.
SPLITS: dict[str, tuple[str, str]] = {
    "train": (TRAIN_IMAGES, TRAIN_LABELS),
    "test": (TEST_IMAGES, TEST_LABELS),
}


def load(
    dataset: str | DatasetInfo,
    data_dir: PathLike | None = None,
    *,
    mirrors: tuple[str, ...] | list[str] = (),
    offline: bool | None = None,
    quiet: bool = False,
    splits: Sequence[str] = ("train", "test"),
) -> Dataset:
    """Fetch if needed, verify, and return the dataset as arrays (each file is read once).

    splits=("test",) reads, verifies and (if need be) downloads only the two test files, as
    `eval --split test` needs: x_train and t_train are then empty, shaped (0, C, H, W) and (0,),
    and `checksums` holds the test files only. For the idx dataset, num_classes then counts the
    loaded labels only.
    """
    info = get_info(dataset)
    wanted = _check_split_names(splits)
    names = tuple(name for split in wanted for name in SPLITS[split])
    transfer = Transfer(quiet=quiet)
    result, files = resolve(
        info, data_dir, mirrors=mirrors, offline=offline, transfer=transfer,
        want_arrays=True, names=names,
    )  # fmt: skip
    num_classes = info.num_classes or _count_classes(info, files)
    pairs = {split: _pair(files, split) for split in wanted}
    shape = next(iter(pairs.values()))[0].shape[1:]
    empty = (np.zeros((0, *shape), np.float32), np.zeros(0, np.int64))
    (x_train, t_train), (x_test, t_test) = (pairs.get(split, empty) for split in SPLITS)
    return Dataset(
        name=info.name,
        x_train=x_train,
        t_train=t_train,
        x_test=x_test,
        t_test=t_test,
        num_classes=num_classes,
        class_names=tuple(info.class_names or (str(i) for i in range(num_classes))),
        checksums={record.name: record.sha256 for record in result.files},
        folder=result.folder,
    )


def _check_split_names(splits: Sequence[str]) -> list[str]:
    """The requested splits in SPLITS order; ConfigError for none or an unknown one."""
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise ConfigError(
            f"cannot load split(s) {', '.join(map(repr, unknown or splits)) or 'none'}",
            hint=f"choose from {', '.join(SPLITS)}",
        )
    return [split for split in SPLITS if split in splits]


def _pair(files: dict[str, IdxFile], split: str) -> Pair:
    images, labels = SPLITS[split]
    return _images(files.pop(images)), files.pop(labels).data.astype(np.int64)


def _images(idx: IdxFile) -> np.ndarray:
    n, h, w = idx.dims
    x = idx.data.reshape(n, 1, h, w).astype(np.float32)  # (N, H, W) -> (N, 1, H, W)
    x /= 255  # in place: one float32 array, never a float64 temporary
    return x


def _count_classes(info: DatasetInfo, files: dict[str, IdxFile]) -> int:
    """For unverified data: max label + 1 over the loaded label files, at least two classes."""
    labels = [files[name] for name in (TRAIN_LABELS, TEST_LABELS) if name in files]
    num_classes = 1 + max(int(idx.data.max()) for idx in labels)
    if num_classes < 2:
        raise DataError(
            f"{info.name}: every label is 0 in {labels[0].path}",
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
