"""More activations: tanh and leaky ReLU."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from .base import LAYERS, Layer


@LAYERS.register("tanh")
class Tanh(Layer):
    """tanh(x); backward is dout * (1 - y^2), from the cached output."""

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "tanh"}, "input_shape": (7,)}

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # dout * (1 - y^2) in one work array rather than three temporaries; same rounding.
        dx = self.out * self.out
        np.subtract(1, dx, out=dx)
        dx *= dout
        return dx


@LAYERS.register("leaky_relu", aliases=("leakyrelu",), key_aliases={"negative_slope": "alpha"})
class LeakyRelu(Layer):
    """x where x > 0, alpha * x elsewhere: negative inputs keep a small gradient."""

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "leaky_relu", "alpha": 0.1},
        "input_shape": (7,),
    }

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        if not 0 <= alpha < 1:
            raise ConfigError(f"must be in [0, 1), got {alpha}", path="alpha")
        self.alpha = float(alpha)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        # The local slope, exactly 1 or alpha: max(0 or 1, alpha) as alpha < 1. Multiplying by
        # it gives np.where(x > 0, x, alpha * x) bit for bit, at a fifth of where's cost.
        self.slope = np.maximum(x > 0, x.dtype.type(self.alpha))
        return x * self.slope

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.slope

    def kink_state(self) -> tuple[np.ndarray, ...]:
        return (self.slope,)  # 1 or alpha: flips where an input crosses 0

    def __repr__(self) -> str:
        return f"LeakyRelu(alpha={self.alpha})"
