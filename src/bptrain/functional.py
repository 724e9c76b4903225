"""Pure, numerically stable helpers for the layers, network and trainer; dtype in = dtype out.

The seed's softmax and cross_entropy_error are not here: the loss layer fuses them
(losses.SoftmaxWithLoss), and the tests keep the seed's own versions (seed_reference.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Stable logistic function: exp only sees non-positive arguments, so it never overflows."""
    e = np.exp(-np.abs(x))
    # x >= 0: 1 / (1 + e^-x);  x < 0: e^x / (1 + e^x).  Both with e = e^-|x| <= 1.
    return np.where(x >= 0, 1, e) / (1 + e)


def labels_of(t: np.ndarray) -> np.ndarray:
    """Integer labels from integer labels or one-hot rows (argmax picks the hot column)."""
    t = np.asarray(t)
    return t.argmax(axis=1) if t.ndim == 2 else t


def finite_or_null(value: Any) -> Any:
    """Plain data with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def softmax(x: np.ndarray) -> np.ndarray:
    """Probabilities from scores along the last axis; the max shift keeps exp from overflowing."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def index_type(count: int) -> np.dtype:
    """The smallest unsigned integer type that holds indices 0 .. count - 1 (a pooling
    window's argmax: one byte covers windows up to 16x16)."""
    return np.min_scalar_type(max(count - 1, 0))


# --- image windows: shared by the conv and pooling layers and accel/'s convolutions ---------

Pair = tuple[int, int]


def output_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Window positions along one axis: floor((size + 2*pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def window(x: np.ndarray, i: int, j: int, stride: int, out_hw: Pair) -> np.ndarray:
    """The inputs under kernel offset (i, j) for every output pixel: a (N, C, OH, OW) view."""
    oh, ow = out_hw
    return x[:, :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]


def offsets(kernel: Pair) -> Iterator[tuple[int, int, int]]:
    """(k, i, j) for every kernel offset (i, j), k its flat index in row-major order."""
    kh, kw = kernel
    for k in range(kh * kw):
        yield k, k // kw, k % kw
