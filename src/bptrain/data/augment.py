"""Data augmentation: random transforms of each training batch, drawn from the run's generator.

`data.augment` lists transforms, e.g. ``[{type: shift, pixels: 2}, {type: hflip}]``; fit()
applies them in that order to every mini-batch after it is gathered, never to validation or
test data. They draw from the run's own generator (the one that shuffles and drops out), so a
seeded run is reproducible and a resumed one exact: the generator's state is in the
checkpoint. With no transforms nothing is drawn, and a run is the same as before augmentation
existed.

Each transform is vectorized over the batch: one padded copy and one gather for the shifts,
one `where` for the flips, one broadcast mask for the erased rectangles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError
from ..registry import Named, Registry

AUGMENTATIONS = Registry("augmentation")

log = logging.getLogger("bptrain.run")

# Datasets whose classes survive a left-right mirror. A mirrored digit is not a digit (or is
# another one), so mnist is not here, nor `idx`, whose content is unknown.
MIRROR_SAFE = frozenset({"fashion-mnist"})


class Transform(Named):
    """__call__(x, rng) -> a new (N, C, H, W) batch of x's dtype; x itself is not changed."""

    example: ClassVar[dict[str, Any]] = {}

    def __init__(self, not_on: list | tuple = (), only_on: list | tuple | None = None) -> None:
        # Datasets a preset leaves this transform out on, or the only ones it runs on: what
        # helps one dataset can hurt another (2-pixel shifts cost the small `cnn` 1.5 points
        # on Fashion-MNIST), and one preset serves both.
        self.not_on = _dataset_names(not_on, "not_on")
        self.only_on = None if only_on is None else _dataset_names(only_on, "only_on")

    def skipped_on(self, dataset: str) -> str | None:
        """Why this transform must not run on `dataset`, or None when it may."""
        if dataset in self.not_on:
            return f"not_on lists {dataset}"
        if self.only_on is not None and dataset not in self.only_on:
            return f"only_on does not list {dataset}"
        return None

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


def _dataset_names(names: Any, key: str) -> tuple[str, ...]:
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"must be a list of dataset names, got {names!r}", path=key)
    return tuple(names)


def _images(x: np.ndarray, name: str) -> tuple[int, int, int, int]:
    if x.ndim != 4:
        raise ConfigError(
            f"{name} works on images (N, C, H, W); this data has shape {list(x.shape[1:])}",
            path="data.augment",
        )
    return x.shape  # type: ignore[return-value]


@AUGMENTATIONS.register(
    "shift",
    aliases=("random_crop", "crop", "translate", "random_shift"),
    key_aliases={"padding": "pixels", "pad": "pixels", "max_shift": "pixels"},
)
class Shift(Transform):
    """Move each image by (dy, dx), each drawn uniformly from -pixels..pixels, filling the
    uncovered border with `fill`: the "pad by `pixels`, random crop back to size" recipe.
    """

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "shift", "pixels": 2}}

    def __init__(
        self, pixels: int = 2, fill: float = 0.0, not_on: list | tuple = (), only_on=None
    ) -> None:
        super().__init__(not_on, only_on)
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
            raise ConfigError(f"must be an integer >= 1, got {pixels!r}", path="pixels")
        self.pixels = pixels
        self.fill = float(fill)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, c, h, w = _images(x, "shift")
        p = self.pixels
        corner = rng.integers(0, 2 * p + 1, size=(2, n))  # where each crop starts in the pad
        padded = np.full((n, c, h + 2 * p, w + 2 * p), self.fill, dtype=x.dtype)
        padded[:, :, p : p + h, p : p + w] = x
        windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W)
        # One gather: sample i's window at its corner; the arrays index axes 0, 2 and 3, so
        # NumPy puts the batch axis first and keeps (C, H, W) after it.
        return windows[np.arange(n), :, corner[0], corner[1]]

    def __repr__(self) -> str:
        return f"Shift(pixels={self.pixels})"


@AUGMENTATIONS.register(
    "hflip", aliases=("flip", "horizontal_flip", "random_flip", "randomhorizontalflip")
)
class HorizontalFlip(Transform):
    """Mirror each image left-right with probability `p`.

    Only on datasets whose classes a mirror keeps (Fashion-MNIST's shirts and shoes); on
    digits it is skipped with a note, since a mirrored 2 or 7 is no digit. `force: true` flips
    any data (an `idx` folder of pictures whose classes are known to be mirror-safe).
    """

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "hflip"}}

    def __init__(
        self, p: float = 0.5, force: bool = False, not_on: list | tuple = (), only_on=None
    ) -> None:
        super().__init__(not_on, only_on)
        if not 0 < p <= 1:
            raise ConfigError(f"must be in (0, 1], got {p}", path="p")
        self.p = float(p)
        self.force = force

    def skipped_on(self, dataset: str) -> str | None:
        reason = super().skipped_on(dataset)
        if reason is not None:
            return reason
        if self.force or dataset in MIRROR_SAFE:
            return None
        return f"a mirror can change the class of {dataset} images (force: true flips anyway)"

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = _images(x, "hflip")[0]
        flip = rng.random(n) < self.p
        return np.where(flip[:, None, None, None], x[..., ::-1], x)

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


@AUGMENTATIONS.register(
    "erase", aliases=("random_erasing", "random_erase", "cutout"), key_aliases={"prob": "p"}
)
class Erase(Transform):
    """Random erasing (Zhong et al., 2017): with probability `p`, fill one rectangle of each
    image with `fill`. Its area is a uniform fraction `area` of the image's, its height/width
    ratio log-uniform in [aspect, 1 / aspect], its place uniform over where it fits.

    The network cannot lean on any one part of an image (a collar, a sole), which regularizes
    without moving or mirroring anything. One (N, H, W) mask from broadcast comparisons.
    """

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "erase", "p": 0.5}}

    def __init__(
        self,
        p: float = 0.5,
        area: list | tuple = (0.02, 0.4),
        aspect: float = 0.3,
        fill: float = 0.0,
        not_on: list | tuple = (),
        only_on=None,
    ) -> None:
        super().__init__(not_on, only_on)
        if not 0 < p <= 1:
            raise ConfigError(f"must be in (0, 1], got {p}", path="p")
        if not isinstance(area, (list, tuple)) or len(area) != 2 or not 0 < area[0] <= area[1] <= 1:
            raise ConfigError(
                f"must be [low, high] with 0 < low <= high <= 1, got {area!r}", path="area"
            )
        if not 0 < aspect <= 1:
            raise ConfigError(f"must be in (0, 1], got {aspect}", path="aspect")
        self.p, self.area, self.aspect, self.fill = (
            float(p),
            tuple(map(float, area)),
            float(aspect),
            float(fill),
        )

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, _, h, w = _images(x, "erase")
        erased = rng.random(n) < self.p
        area = rng.uniform(*self.area, size=n) * h * w
        ratio = np.exp(rng.uniform(np.log(self.aspect), -np.log(self.aspect), size=n))
        eh = np.clip(np.rint(np.sqrt(area * ratio)), 1, h).astype(np.int64)
        ew = np.clip(np.rint(np.sqrt(area / ratio)), 1, w).astype(np.int64)
        top = (rng.random(n) * (h - eh + 1)).astype(np.int64)
        left = (rng.random(n) * (w - ew + 1)).astype(np.int64)
        rows, cols = np.arange(h), np.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (N, H)
        in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (N, W)
        mask = in_rows[:, :, None] & in_cols[:, None, :] & erased[:, None, None]
        return np.where(mask[:, None], x.dtype.type(self.fill), x)

    def __repr__(self) -> str:
        return f"Erase(p={self.p}, area={list(self.area)})"


class Augmenter:
    """The transforms of `data.augment` that apply to a dataset, run in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Augmenter({', '.join(map(repr, self.transforms))})"


def build(specs: Sequence[Any], dataset: str) -> Augmenter | None:
    """The augmenter for `dataset`, or None when no transform applies (nothing is drawn)."""
    transforms = []
    for i, spec in enumerate(specs):
        transform = AUGMENTATIONS.build(spec, f"data.augment[{i}]")
        reason = transform.skipped_on(dataset)
        if reason is None:
            transforms.append(transform)
        else:
            log.info(f"data.augment[{i}] ({transform.name}) is not used: {reason}")
    return Augmenter(transforms) if transforms else None
