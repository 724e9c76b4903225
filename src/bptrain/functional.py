"""Pure, numerically stable functions shared by layers and losses; dtype in = dtype out."""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Stable logistic function: exp only sees non-positive arguments, so it never overflows."""
    e = np.exp(-np.abs(x))
    # x >= 0: 1 / (1 + e^-x);  x < 0: e^x / (1 + e^x).  Both with e = e^-|x| <= 1.
    return np.where(x >= 0, 1, e) / (1 + e)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log(softmax(x)) along the last axis, computed from max-shifted scores."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax along the last axis; the max shift keeps exp from overflowing."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def one_hot(t: np.ndarray, num_classes: int, dtype: np.dtype = np.float32) -> np.ndarray:
    """Integer labels (N,) -> one-hot rows (N, num_classes)."""
    out = np.zeros((t.shape[0], num_classes), dtype=dtype)
    out[np.arange(t.shape[0]), t] = 1
    return out


def labels_of(t: np.ndarray) -> np.ndarray:
    """Integer labels from integer labels or one-hot rows (argmax picks the hot column)."""
    t = np.asarray(t)
    return t.argmax(axis=1) if t.ndim == 2 else t


def cross_entropy(y: np.ndarray, t: np.ndarray) -> float:
    """The seed's cross-entropy of probabilities `y` against labels or one-hot `t` (mean over N)."""
    y = np.atleast_2d(y)
    t = np.asarray(t)
    tiny = np.finfo(y.dtype).tiny  # keeps log(0) finite without biasing normal values
    if t.ndim == 2:
        return float(-np.sum(t * np.log(y + tiny)) / y.shape[0])
    return float(-np.sum(np.log(y[np.arange(y.shape[0]), t] + tiny)) / y.shape[0])
