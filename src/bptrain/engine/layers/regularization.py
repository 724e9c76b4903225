"""Regularization layers: inverted dropout."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from .base import LAYERS, Layer, Shape


@LAYERS.register("dropout", key_aliases={"p": "rate"})
class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability `rate` and scale the
    kept ones by 1 / (1 - rate), so inference is the identity and needs no rescaling.

    Masks come from the generator the layer receives in `build` (the network's), so a seeded
    run, a resumed run and a gradient check all draw the same masks.
    """

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "dropout", "rate": 0.3},
        "input_shape": (3, 4),
    }

    def __init__(self, rate: float = 0.5) -> None:
        super().__init__()
        if not 0 <= rate < 1:
            raise ConfigError(f"must be in [0, 1), got {rate}", path="rate")
        self.rate = float(rate)
        self.rng: np.random.Generator | None = None
        self.mask: np.ndarray | None = None

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        self.rng = rng
        return input_shape

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not train or self.rate == 0:
            self.mask = None
            return x
        if self.rng is None:
            raise RuntimeError("Dropout draws its masks from the generator given to build()")
        # float32 draws whatever x's dtype: half the random bits, and rate needs no more precision.
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        self.mask = keep * x.dtype.type(1 / (1 - self.rate))  # 0 or 1/(1-rate), in x's dtype
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.mask is None:
            return dout.copy()  # a new array, like every other backward
        return dout * self.mask

    def __repr__(self) -> str:
        return f"Dropout(rate={self.rate})"
