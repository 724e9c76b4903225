"""The seed's layers: ReLU, Sigmoid, Affine, plus Flatten."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ... import functional as F
from ...accel.matmul import matmul
from ...errors import ConfigError
from ..initializers import INITIALIZERS
from .base import LAYERS, Layer, Shape


@LAYERS.register("relu")
class Relu(Layer):
    """max(0, x); backward lets the gradient through where x > 0 (a new array, never in place)."""

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "relu"}, "input_shape": (7,)}

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # The seed writes dout[mask] = 0 into the caller's array; multiplying makes a new one.
        return dout * self.mask

    def kink_state(self) -> tuple[np.ndarray, ...]:
        return (self.mask,)


@LAYERS.register("sigmoid")
class Sigmoid(Layer):
    """1 / (1 + exp(-x)), stable for any input; backward is dout * y * (1 - y)."""

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "sigmoid"}, "input_shape": (7,)}

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.out = F.sigmoid(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.out) * self.out


@LAYERS.register("flatten")
class Flatten(Layer):
    """(N, ...) -> (N, prod(...)); backward restores the input's shape."""

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "flatten"}, "input_shape": (2, 3, 2)}

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.x_shape)


@LAYERS.register("affine", aliases=("linear", "dense"), key_aliases={"out_features": "units"})
class Affine(Layer):
    """x W + b on (N, ...) input flattened to (N, D); dx comes back in the input's shape.

    Use it as the seed does, `Affine(W, b)`, or from a spec, `{type: affine, units: 100,
    init: he}`, which draws W when the network is built and knows the input size.
    """

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "affine", "units": 4, "init": "xavier"},
        "input_shape": (2, 3),
    }

    def __init__(
        self,
        W: np.ndarray | None = None,
        b: np.ndarray | None = None,
        *,
        units: int | None = None,
        init: str | dict = "he",
    ) -> None:
        super().__init__()
        if W is None and units is None:
            raise ConfigError("affine needs 'units' (the number of outputs)", path="units")
        if units is not None and units < 1:
            raise ConfigError(f"must be a positive integer, got {units}", path="units")
        if W is not None and (np.ndim(W) != 2 or (units is not None and units != W.shape[1])):
            raise ConfigError("W must be a (inputs, units) matrix", path="W")
        self.units = int(units if units is not None else W.shape[1])  # type: ignore[union-attr]
        self.init = INITIALIZERS.build(init, path="init")
        if W is not None:
            b = np.zeros(self.units, dtype=W.dtype) if b is None else np.asarray(b)
            self._set_params(W=np.asarray(W), b=b)

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        fan_in = math.prod(input_shape)
        if "W" in self.params:
            if self.params["W"].shape[0] != fan_in:
                raise ConfigError(
                    f"W has {self.params['W'].shape[0]} rows but the input has {fan_in} features"
                )
            W, b = self.params["W"].astype(dtype), self.params["b"].astype(dtype)
        else:
            W = self.init((fan_in, self.units), fan_in, self.units, rng, dtype)
            b = np.zeros(self.units, dtype=dtype)
        self._set_params(W=np.ascontiguousarray(W), b=b)
        return (self.units,)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)  # (N, ...) -> (N, D), a view when x is contiguous
        out = matmul(self.x, self.params["W"])
        out += self.params["b"]
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        # Gradients are written into the existing arrays so the network's views stay valid.
        matmul(self.x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        if self.skip_input_grad:
            return None
        return matmul(dout, self.params["W"].T).reshape(self.x_shape)

    @property
    def dW(self) -> np.ndarray:
        """The seed's name for grads["W"]."""
        return self.grads["W"]

    @property
    def db(self) -> np.ndarray:
        """The seed's name for grads["b"]."""
        return self.grads["b"]

    def __repr__(self) -> str:
        return f"Affine(units={self.units})"
