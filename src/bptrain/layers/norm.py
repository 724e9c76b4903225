"""Batch normalization: per feature on (N, D) input, per channel on (N, C, H, W) input."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from .base import LAYERS, Layer, Shape


@LAYERS.register("batch_norm")
class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, statistics per feature or channel.

    Training normalizes with the batch's mean and (biased) variance and folds them into the
    running statistics, ``running = momentum * running + (1 - momentum) * batch`` (the book's
    rule, biased variance included); inference normalizes with the running statistics.
    """

    # Batch statistics need several samples (the registry gradient check reads "batch").
    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "batch_norm", "momentum": 0.8},
        "input_shape": (3, 2, 2),
        "batch": 4,
    }

    def __init__(self, momentum: float = 0.9, eps: float = 1e-5) -> None:
        super().__init__()
        if not 0 <= momentum < 1:
            raise ConfigError(f"must be in [0, 1), got {momentum}", path="momentum")
        if not eps > 0:
            raise ConfigError(f"must be > 0, got {eps}", path="eps")
        self.momentum = float(momentum)
        self.eps = float(eps)

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        if len(input_shape) not in (1, 3):
            raise ConfigError(
                f"batch_norm needs (features,) or (channels, height, width) input, "
                f"got a {len(input_shape)}-D shape"
            )
        c = input_shape[0]
        self._set_params(gamma=np.ones(c, dtype=dtype), beta=np.zeros(c, dtype=dtype))
        self.buffers["running_mean"] = np.zeros(c, dtype=dtype)
        self.buffers["running_var"] = np.ones(c, dtype=dtype)
        return input_shape

    @staticmethod
    def _axes(x: np.ndarray) -> tuple[int, ...]:
        """The axes statistics are taken over: the batch, and the pixels of an image."""
        return (0,) if x.ndim == 2 else (0, 2, 3)

    @staticmethod
    def _per_channel(v: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(C,) -> a shape that broadcasts against x: (C,) for (N, C), (C, 1, 1) for images."""
        return v if x.ndim == 2 else v[:, None, None]

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if train:
            axes = self._axes(x)
            mean = x.mean(axis=axes)
            xc = x - self._per_channel(mean, x)
            var = np.mean(xc * xc, axis=axes)
            self._fold(mean, var)
        else:
            var = self.buffers["running_var"]
            xc = x - self._per_channel(self.buffers["running_mean"], x)
        self.std = np.sqrt(var + x.dtype.type(self.eps))  # (C,)
        self.batch_stats = train
        self.xhat = xc / self._per_channel(self.std, x)
        gamma, beta = (self._per_channel(self.params[k], x) for k in ("gamma", "beta"))
        return self.xhat * gamma + beta

    def _fold(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Move the running statistics towards this batch's, in place."""
        keep = mean.dtype.type(self.momentum)
        for name, value in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[name]
            running *= keep
            running += (1 - keep) * value

    def backward(self, dout: np.ndarray) -> np.ndarray:
        axes = self._axes(dout)
        np.sum(dout, axis=axes, out=self.grads["beta"])
        np.sum(dout * self.xhat, axis=axes, out=self.grads["gamma"])
        scale = self.params["gamma"] / self.std  # (C,)
        if not self.batch_stats:
            # The running statistics are constants: the layer is affine in x.
            return dout * self._per_channel(scale, dout)
        # The compact form of backprop through mean and variance (m values per channel):
        # dx = gamma / (m * std) * (m * dout - sum(dout) - xhat * sum(dout * xhat)).
        m = dout.size // scale.size
        dbeta = self._per_channel(self.grads["beta"], dout)
        dgamma = self._per_channel(self.grads["gamma"], dout)
        dx = dout * dout.dtype.type(m) - dbeta - self.xhat * dgamma
        dx *= self._per_channel(scale / dout.dtype.type(m), dout)
        return dx

    def __repr__(self) -> str:
        return f"BatchNorm(momentum={self.momentum}, eps={self.eps})"
