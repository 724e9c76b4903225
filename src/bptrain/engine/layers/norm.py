"""Batch normalization: per feature on (N, D) input, per channel on (N, C, H, W) input.

BatchNorm works on a 2-D (M, C) view with the channels innermost: a pixel-major conv output
(OH, OW, N, C memory, see conv.py) and a C-order (N, D) batch have one for free; any other
layout is copied once into (N, H, W, C) order. The output and dx keep the layout the layer
worked in, so a pixel-major conv output stays pixel-major for the max-pool after it.

The passes over the data run in tiles of rows that stay in a core's cache (TILE_BYTES): a
NumPy ufunc over a 10 MB array runs at memory speed (0.5 ns per float32 here), over a cached
tile at 0.15-0.2 ns, so the 3-5 ufuncs a tile needs cost little more than reading it once.
Tiles are viewed "wide", R rows of C channels as one row of R*C values against per-channel
vectors tiled R times: a ufunc's inner loop then runs over thousands of values instead of C.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from ...accel import kernels
from ...errors import ConfigError
from .base import LAYERS, Layer, Shape

# Bytes of one tile of rows. Measured on the cnn-deep preset's first BatchNorm (batch 100, one
# thread), forward / backward: 128 KB tiles 5.5 / 6.9 ms, 512 KB 4.7 / 6.0, 1 MB 4.6 / 6.0.
TILE_BYTES = 1 << 19
# Wide rows hold up to this many values (R * C).
WIDE_VALUES = 4096


def _channel_matrix(a: np.ndarray) -> tuple[np.ndarray, str] | None:
    """A 2-D view of (N, C) or (N, C, H, W) `a` with the channels as one axis: (M, C) when they
    are innermost in memory (a pixel-major conv output, a C-order (N, C) batch), (C, M) when
    outermost (channel-major); with einsum's name for it. None when there is no such view.
    """
    order = sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis]))  # outermost first
    if a.shape[1] == 1:  # one channel: innermost in every layout (its stride means nothing)
        order = [axis for axis in order if axis != 1] + [1]
    view = a.transpose(order)
    if not view.flags.c_contiguous:
        return None
    if order[-1] == 1:
        return view.reshape(-1, a.shape[1]), "mc"
    if order[0] == 1:
        return view.reshape(a.shape[1], -1), "cm"
    return None


def channel_sum(a: np.ndarray) -> np.ndarray:
    """Sum of (N, C) or (N, C, H, W) `a` over every axis but the channels (axis 1), as (C,).

    One matrix-vector product when a 2-D channel view exists: NumPy reduces over outer axes in
    channel-length inner loops, 2-3x slower (0.97 vs 0.42 ms over a pixel-major
    (100, 30, 24, 24) array).
    """
    matrix = _channel_matrix(a)
    if matrix is None:
        return a.sum(axis=tuple(axis for axis in range(a.ndim) if axis != 1))
    view, axes = matrix
    ones = np.ones(a.size // a.shape[1], dtype=a.dtype)
    return ones @ view if axes == "mc" else view @ ones


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """channel_sum(a * b) without the product array when a and b share a channel view: one
    pass instead of three (0.5 vs 1.2 ms over a pixel-major (100, 30, 24, 24) pair).
    """
    ma, mb = _channel_matrix(a), _channel_matrix(b)
    if ma is None or mb is None or ma[1] != mb[1] or ma[0].shape != mb[0].shape:
        return channel_sum(a * b)
    axes = ma[1]
    return np.einsum(f"{axes},{axes}->c", ma[0], mb[0])


def channel_sums_of_squares(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-channel sums of (x - mean)^2 over channels-innermost `x`, centred first (no
    cancellation), tile by tile."""
    xw = _wide(x)  # (M / R, R * C) view
    return BatchNorm._centered_squares(xw, _widen(mean, xw), x.shape[1])


def _channels_innermost(a: np.ndarray) -> np.ndarray:
    """`a` itself when a 2-D (M, C) view with the channels innermost exists, else a copy of
    (N, C, H, W) `a` in (N, H, W, C) memory order (a C-order copy of an (N, C) batch).
    """
    matrix = _channel_matrix(a)
    if matrix is not None and matrix[1] == "mc":
        return a
    if a.ndim == 2:
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _like(a: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """`a` itself when its memory order matches `layout`'s, else a copy in that order."""
    if a.strides == layout.strides:
        return a
    result = np.empty_like(layout, dtype=a.dtype)  # empty_like keeps layout's memory order
    result[...] = a
    return result


def _rows(a: np.ndarray) -> np.ndarray:
    """The (M, C) channel matrix of channels-innermost `a` (a view)."""
    return _channel_matrix(a)[0]  # type: ignore[index]  # a is channels-innermost


def _wide(a: np.ndarray) -> np.ndarray:
    """The (M, C) channel matrix of channels-innermost `a` as (M / R, R * C), R | M."""
    rows = _rows(a)
    m, c = rows.shape
    r = max(1, min(m, WIDE_VALUES // c))
    while m % r:  # the largest R that divides M: one reshape, no remainder rows
        r -= 1
    return rows.reshape(m // r, r * c)


def _tile_rows(wide: np.ndarray) -> int:
    """Rows of `wide` per tile: about TILE_BYTES, at least one."""
    return max(1, TILE_BYTES // (wide.shape[1] * wide.itemsize))


def _tiles(wide: np.ndarray) -> Iterator[slice]:
    """Slices of _tile_rows(wide) rows covering all of `wide`'s rows."""
    step, rows = _tile_rows(wide), wide.shape[0]
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def _widen(v: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """A per-channel (C,) vector repeated along a wide row: (R * C,)."""
    return np.tile(v, wide.shape[1] // v.size)


def _per_channel(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(C,) -> a shape that broadcasts against a: (C,) for (N, C), (C, 1, 1) for images."""
    return v if a.ndim == 2 else v[:, None, None]


def _narrow(v: np.ndarray, c: int) -> np.ndarray:
    """The adjoint of _widen: (R * C,) partial sums -> (C,) per-channel sums."""
    return v.reshape(-1, c).sum(axis=0)


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
        x = _channels_innermost(x)
        scale = self.prepare(x, train)
        out = np.empty_like(x)  # x's memory order, so _wide(out) matches _wide(x) row for row
        fast = kernels.compiled()
        if fast is not None:
            fast.scale_shift(_rows(x), self.mean, scale, self.params["beta"], _rows(out))
            return out
        xw, ow = _wide(x), _wide(out)
        mean_w, scale_w = _widen(self.mean, xw), _widen(scale, xw)
        beta_w = _widen(self.params["beta"], xw)
        for rows in _tiles(xw):
            o = ow[rows]
            np.subtract(xw[rows], mean_w, out=o)  # (x - mean) * gamma / std + beta
            o *= scale_w
            o += beta_w
        return out

    def prepare(self, x: np.ndarray, train: bool) -> np.ndarray:
        """Everything forward does before normalizing channels-innermost `x`: the statistics
        (the batch's, folded into the running ones, or the running ones) and what backward
        keeps. Returns the per-channel scale gamma / std; y = (x - mean) * scale + beta.
        """
        if train:
            mean, var = self.batch_statistics(x)
            self._fold(mean, var)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        std = np.sqrt(var + x.dtype.type(self.eps))  # (C,)
        # Kept for backward, which recomputes x - mean tile by tile from x itself (layers
        # never write into their inputs): cheaper than storing a normalized copy.
        self.x, self.mean, self.std, self.batch_stats = x, mean.copy(), std, train
        return self.params["gamma"] * (x.dtype.type(1) / std)

    def batch_statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel mean and biased variance of channels-innermost `x`, this batch's.

        Data-parallel training with train.sync_batch_norm makes each BatchNorm a
        SyncBatchNorm (scale/parallel.py), whose statistics are the whole batch's.
        """
        fast = kernels.compiled()
        if fast is not None:
            return self._one_pass_statistics(fast, x)
        m = x.dtype.type(x.size // x.shape[1])
        mean = channel_sum(x) / m
        return mean, channel_sums_of_squares(x, mean) / m

    def _one_pass_statistics(self, fast: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch's per-channel mean and biased variance of channels-innermost `x`, from
        sums of x - running mean and of its squares taken in one compiled pass (the mean,
        then the centred squares, as NumPy and the MPI-synchronized path take them, read a
        10 MB conv output twice). Centring on the running mean, which tracks the batch
        means, keeps the variance free of cancellation."""
        shift = self.buffers["running_mean"].astype(np.float64)
        sums, squares = fast.shifted_moments(_rows(x), shift)
        m = x.size // x.shape[1]
        step = sums / m  # the batch mean minus the shift
        var = np.maximum(squares / m - step * step, 0.0)
        return (shift + step).astype(x.dtype), var.astype(x.dtype)

    @staticmethod
    def _centered_squares(xw: np.ndarray, mean_w: np.ndarray, c: int) -> np.ndarray:
        """Per-channel sum of (x - mean)^2 over wide `xw`: centred first, so no cancellation."""
        work = np.empty_like(xw, shape=(min(xw.shape[0], _tile_rows(xw)), xw.shape[1]))
        acc = np.zeros(xw.shape[1], dtype=xw.dtype)
        for rows in _tiles(xw):
            w = work[: rows.stop - rows.start]
            np.subtract(xw[rows], mean_w, out=w)
            np.square(w, out=w)
            # Column sums of the cached tile, row after row of vector adds; NumPy's own loop,
            # so the bits do not depend on the BLAS thread count.
            acc += w.sum(axis=0)
        return _narrow(acc, c)

    def _fold(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Move the running statistics towards this batch's, in place."""
        keep = mean.dtype.type(self.momentum)
        for name, value in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[name]
            running *= keep
            running += (1 - keep) * value

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, c = self.x, self.x.shape[1]
        dout = _like(dout, x)  # one copy unless dout is already in x's memory order
        fast = kernels.compiled()
        xw, dw = _wide(x), _wide(dout)
        mean_w = _widen(self.mean, xw)
        if fast is None:
            dbeta, dxc = self._gradient_sums(xw, dw, mean_w, c)
        else:
            dbeta, dxc = fast.gradient_sums(_rows(x), self.mean, _rows(dout))
        scale, q, p = self.gradient_factors(dbeta, dxc, dout.dtype)
        if q is None:
            # The running statistics are constants: the layer is affine in x.
            return dout * _per_channel(scale, dout)
        dx = np.empty_like(x, dtype=dout.dtype)
        if fast is not None:
            fast.batch_norm_dx(_rows(x), self.mean, _rows(dout), q, p, scale, _rows(dx))
            return dx
        q_w, p_w, scale_w = _widen(q, xw), _widen(p, xw), _widen(scale, xw)
        dxw = _wide(dx)
        for rows in _tiles(xw):
            d = dxw[rows]
            np.subtract(xw[rows], mean_w, out=d)
            d *= q_w
            d += dw[rows]
            d += p_w
            d *= scale_w
        return dx

    def gradient_factors(
        self, dbeta: np.ndarray, dxc: np.ndarray, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Set the parameter gradients from the per-channel sum(dout) and sum(dout * (x -
        mean)); return (scale, q, p) for dx = ((x - mean) * q + dout + p) * scale, or
        (scale, None, None) under running statistics, where dx = dout * scale.
        """
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = dxc / self.std  # sum(dout * xhat), xhat = (x - mean) / std
        scale = self.params["gamma"] / self.std  # (C,)
        if not self.batch_stats:
            return scale, None, None
        # Backprop through mean and variance (m values per channel):
        # dx = gamma / std * (dout - (sum(dout) + xhat * sum(dout * xhat)) / m),
        # evaluated per tile as ((x - mean) * q + dout + p) * gamma / std with per-channel
        # q = -sum(dout * xhat) / (m * std) and p = -sum(dout) / m.
        dgamma, dbeta, count = self.batch_sums(self.grads["gamma"], self.grads["beta"])
        m = dtype.type(count)
        return scale, -dgamma / (m * self.std), -dbeta / m

    def batch_sums(
        self, dgamma: np.ndarray, dbeta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The sums over the batch that dx depends on, and how many values each adds:
        this batch's here, the whole batch's in a SyncBatchNorm (scale/parallel.py)."""
        return dgamma, dbeta, self.x.size // self.x.shape[1]

    @staticmethod
    def _gradient_sums(
        xw: np.ndarray, dw: np.ndarray, mean_w: np.ndarray, c: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel sum(dout) and sum(dout * (x - mean)), in one pass over both arrays."""
        work = np.empty_like(xw, shape=(min(xw.shape[0], _tile_rows(xw)), xw.shape[1]))
        dsum, dot = np.zeros(xw.shape[1], dtype=dw.dtype), np.zeros(xw.shape[1], dtype=dw.dtype)
        for rows in _tiles(xw):
            w, d = work[: rows.stop - rows.start], dw[rows]
            dsum += d.sum(axis=0)
            np.subtract(xw[rows], mean_w, out=w)
            w *= d
            dot += w.sum(axis=0)
        return _narrow(dsum, c), _narrow(dot, c)

    def __repr__(self) -> str:
        return f"BatchNorm(momentum={self.momentum}, eps={self.eps})"
