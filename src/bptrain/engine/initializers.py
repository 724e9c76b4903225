"""Weight initializers: normal with a given std, Xavier (Glorot) and He, by registry name."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..registry import Registry

INITIALIZERS = Registry("initializer")


class Initializer:
    """Draws a weight array of `shape` given its fan-in and fan-out."""

    def std(self, fan_in: int, fan_out: int) -> float:
        raise NotImplementedError

    def __call__(
        self,
        shape: tuple[int, ...],
        fan_in: int,
        fan_out: int,
        rng: np.random.Generator,
        dtype: np.dtype = np.float32,
    ) -> np.ndarray:
        w = rng.standard_normal(shape, dtype=np.float64) * self.std(fan_in, fan_out)
        return w.astype(dtype)


@INITIALIZERS.register("normal")
class Normal(Initializer):
    """Gaussian with a fixed std (the seed's `weight_init_std * randn`, 0.01 by default)."""

    def __init__(self, std: float = 0.01) -> None:
        if std <= 0:
            raise ConfigError(f"std must be > 0, got {std}", path="std")
        self._std = float(std)

    def std(self, fan_in: int, fan_out: int) -> float:
        return self._std


@INITIALIZERS.register("xavier")
class Xavier(Initializer):
    """Glorot: std sqrt(2 / (fan_in + fan_out)), suited to sigmoid and tanh."""

    def std(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(2.0 / (fan_in + fan_out))


@INITIALIZERS.register("he")
class He(Initializer):
    """He: std sqrt(2 / fan_in), suited to ReLU."""

    def std(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(2.0 / fan_in)
