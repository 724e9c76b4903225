"""Batch normalization (Deep Learning from Scratch, 6.3): per feature on (N, D) input, per
channel on (N, C, H, W) input, where every pixel of a channel is one more value of it.

The body is the book's, on (M, C) rows: one row per sample, or per pixel of every sample for
images. With the compiled loops the work goes to accel/batch_norm.py, which computes the
same function in two passes over memory where NumPy's ufuncs take five or six.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ... import accel
from ...errors import ConfigError
from .base import LAYERS, Layer, Shape


def _rows(a: np.ndarray) -> np.ndarray:
    """(N, D) -> itself; (N, C, H, W) -> (N*H*W, C), a row per pixel (a view when a's memory
    has the channels innermost, as a conv's pixel-major output has)."""
    return a if a.ndim == 2 else np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _shaped_like(rows: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(M, C) rows back in (N, C, H, W) `a`'s shape and memory order (the layer after a conv
    reads its pixel-major layout fast)."""
    if a.ndim == 2:
        return rows
    out = np.empty_like(a, dtype=rows.dtype)
    np.moveaxis(out, 1, -1)[...] = rows.reshape(a.shape[0], *a.shape[2:], a.shape[1])
    return out


@LAYERS.register("batch_norm", aliases=("batchnorm1d", "batchnorm2d", "batch_normalization"))
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
        self.fast = None  # accel/batch_norm.py when the compiled loops ran the last forward

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

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.fast = accel.for_layer(self, x, train)  # the compiled loops' way, when they run
        if self.fast is not None:
            return self.fast.forward(self, x, train)
        rows = _rows(x)  # (M, C)
        if train:
            mu = self.batch_mean(rows)
            xc = rows - mu
            var = self.batch_mean(xc**2)
            self._fold(mu, var)
        else:  # inference: the running statistics
            xc = rows - self.buffers["running_mean"]
            var = self.buffers["running_var"]
        std = np.sqrt(var + rows.dtype.type(self.eps))
        xn = xc / std
        self.xc, self.xn, self.std, self.batch_stats = xc, xn, std, train
        out = self.params["gamma"] * xn + self.params["beta"]
        return _shaped_like(out, x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.fast is not None:
            return self.fast.backward(self, dout)
        d = _rows(dout)
        self.grads["beta"][...] = d.sum(axis=0)
        self.grads["gamma"][...] = np.sum(self.xn * d, axis=0)
        dxn = self.params["gamma"] * d
        dxc = dxn / self.std
        if self.batch_stats:  # x moved the batch's mean and variance too: their share
            std3 = self.std * self.std * self.std
            dvar = -0.5 * self.batch_mean(dxn * self.xc) / std3  # the book's dvar / m
            dxc += 2.0 * self.xc * dvar
            dxc -= self.batch_mean(dxc)  # the book's dmu / m
        return _shaped_like(dxc, dout)

    def batch_mean(self, a: np.ndarray) -> np.ndarray:
        """The per-channel mean of (M, C) `a` over the batch: this batch's here, the whole
        batch's (every MPI rank's rows) in scale/parallel.py's SyncBatchNorm."""
        return a.mean(axis=0)

    def _fold(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Move the running statistics towards this batch's, in place."""
        keep = mean.dtype.type(self.momentum)
        for name, value in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[name]
            running *= keep
            running += (1 - keep) * value

    def __repr__(self) -> str:
        return f"BatchNorm(momentum={self.momentum}, eps={self.eps})"
