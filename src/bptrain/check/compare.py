"""Comparing arrays, and central differences on one class: the measures every check shares.

Errors are relative to the array's largest value, so one number means the same for a loss of
2.3 and a convolution's output of 40: |yours - reference| / max(|reference|, floor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..custom.book import kink_state
from ..engine.gradcheck import numerical_derivative, relative_error

# Float32 keeps 7 digits, float64 16: a correct layer lands orders of magnitude below these.
TOLERANCE = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-4}
# The book's loss takes log(y + 1e-7): about 1e-7 / y off the exact loss, which is fine.
LOSS_TOLERANCE = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-4}
NUMERICAL_TOLERANCE = 1e-5  # Richardson-extrapolated central differences in float64
MAX_COORDINATES = 48  # per array and input; more adds time, not information


@dataclass
class Difference:
    """The worst place where two arrays differ."""

    error: float
    index: tuple[int, ...]
    yours: float
    other: float

    def at(self, name: str) -> str:
        """`dx[1, 3]: yours 0.25, reference -0.25`."""
        index = f"[{', '.join(map(str, self.index))}]" if self.index else ""
        return f"{name}{index}: yours {number(self.yours)}"


def number(value: float) -> str:
    return f"{value:.6g}"


def difference(yours: Any, other: Any) -> Difference:
    """The worst scaled difference; both must have the same shape."""
    a = np.asarray(yours, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.size == 0:
        return Difference(0.0, (), 0.0, 0.0)
    scale = max(float(np.max(np.abs(b))), 1e-3)
    gaps = np.abs(a - b) / scale
    gaps = np.where(np.isnan(gaps), np.inf, gaps)  # NaN is the worst difference there is
    flat = int(np.argmax(gaps))
    index = np.unravel_index(flat, a.shape) if a.ndim else ()
    return Difference(
        float(gaps.reshape(-1)[flat]),
        tuple(map(int, index)),
        float(a.reshape(-1)[flat]),
        float(b.reshape(-1)[flat]),
    )


class KinkWatch:
    """Tells a central difference that a nudge flipped the object's mask or argmax."""

    def __init__(self) -> None:
        self.base: tuple[np.ndarray, ...] | None = None
        self.crossed = False

    def observe(self, obj: Any) -> None:
        state = kink_state(obj)
        if self.base is None:
            self.base = state
        elif len(state) != len(self.base) or any(
            a.shape != b.shape or not np.array_equal(a, b)
            for a, b in zip(state, self.base, strict=False)
        ):
            self.crossed = True


def numerical_gradient(
    f: Callable[[KinkWatch], float], array: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of f with respect to up to MAX_COORDINATES entries of `array`.

    Returns the gradient (NaN where not computed) and a mask of the entries compared (a
    nudge across a kink is not comparable with backprop, so it is left out).
    """
    grad = np.full(array.shape, np.nan)
    chosen = np.zeros(array.shape, dtype=bool)
    rng = np.random.default_rng(seed)
    count = min(array.size, MAX_COORDINATES)
    for flat in rng.choice(array.size, size=count, replace=False):
        index = np.unravel_index(int(flat), array.shape)
        watch = KinkWatch()
        f(watch)  # the unperturbed state the nudges are compared with
        evaluate = partial(f, watch)
        value, smooth = numerical_derivative(evaluate, array, index, eps=1e-4, watch=watch)
        if smooth and np.isfinite(value):
            grad[index], chosen[index] = value, True
    return grad, chosen


def numerical_difference(yours: Any, numerical: np.ndarray, chosen: np.ndarray) -> Difference:
    """The worst relative error (the gradient check's measure) over the compared entries."""
    a = np.asarray(yours, dtype=np.float64)
    errors = np.where(chosen, relative_error(a, np.nan_to_num(numerical)), 0.0)
    errors = np.where(np.isnan(errors), np.inf, errors)
    flat = int(np.argmax(errors))
    index = tuple(map(int, np.unravel_index(flat, a.shape))) if a.ndim else ()
    return Difference(
        float(errors.reshape(-1)[flat]),
        index,
        float(a.reshape(-1)[flat]),
        float(numerical.reshape(-1)[flat]),
    )
