"""BatchNorm the fast way, with the compiled loops (compiled/): statistics in one pass, the
normalisation in another, and backward's sums and dx in one each, split over the threads.

It works on a 2-D (M, C) view with the channels innermost: a pixel-major conv output (OH, OW,
N, C memory, see conv.py) and a C-order (N, D) batch have one for free; any other layout is
copied once into (N, H, W, C) order. The output and dx keep the layout it worked in, so a
pixel-major conv output stays pixel-major for the max-pool after it. The book's formulas are
engine/layers/norm.py's; these compute the same function (tests compare them), rounding their
sums otherwise (in float64, in fixed chunks: the same bits on any thread count). The fused
BatchNorm -> max-pool pass (fused.py) uses prepare and gradient_factors too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import kernels


def applies(layer: Any, x: np.ndarray, train: bool) -> bool:
    """With the compiled loops; BatchNorm itself (a SyncBatchNorm's statistics are summed
    over MPI ranks by its own NumPy body: scale/parallel.py)."""
    return type(layer).__name__ == "BatchNorm" and kernels.compiled() is not None


def forward(layer: Any, x: np.ndarray, train: bool) -> np.ndarray:
    x = _channels_innermost(x)
    scale = prepare(layer, x, train)
    out = np.empty_like(x)  # x's memory order
    kernels.compiled().scale_shift(_rows(x), layer.mean, scale, layer.params["beta"], _rows(out))
    return out


def backward(layer: Any, dout: np.ndarray) -> np.ndarray:
    x = layer.x
    dout = _like(dout, x)  # one copy unless dout is already in x's memory order
    fast = kernels.compiled()
    dbeta, dxc = fast.gradient_sums(_rows(x), layer.mean, _rows(dout))
    scale, q, p = gradient_factors(layer, dbeta, dxc, dout.dtype)
    if q is None:
        # The running statistics are constants: the layer is affine in x.
        return dout * _per_channel(scale, dout)
    dx = np.empty_like(x, dtype=dout.dtype)
    fast.batch_norm_dx(_rows(x), layer.mean, _rows(dout), q, p, scale, _rows(dx))
    return dx


def prepare(layer: Any, x: np.ndarray, train: bool) -> np.ndarray:
    """Everything forward does before normalizing channels-innermost `x`: the statistics
    (the batch's, folded into the running ones, or the running ones) and what backward
    keeps. Returns the per-channel scale gamma / std; y = (x - mean) * scale + beta.
    """
    if train:
        mean, var = _one_pass_statistics(layer, x)
        layer._fold(mean, var)
    else:
        mean, var = layer.buffers["running_mean"], layer.buffers["running_var"]
    std = np.sqrt(var + x.dtype.type(layer.eps))  # (C,)
    # Kept for backward, which recomputes x - mean from x itself (layers never write into
    # their inputs): cheaper than storing a normalized copy.
    layer.x, layer.mean, layer.std, layer.batch_stats = x, mean.copy(), std, train
    return layer.params["gamma"] * (x.dtype.type(1) / std)


def _one_pass_statistics(layer: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batch's per-channel mean and biased variance of channels-innermost `x`, from
    sums of x - running mean and of its squares taken in one compiled pass (the mean,
    then the centred squares, as NumPy and the MPI-synchronized path take them, read a
    10 MB conv output twice). Centring on the running mean, which tracks the batch
    means, keeps the variance free of cancellation."""
    shift = layer.buffers["running_mean"].astype(np.float64)
    sums, squares = kernels.compiled().shifted_moments(_rows(x), shift)
    m = x.size // x.shape[1]
    step = sums / m  # the batch mean minus the shift
    var = np.maximum(squares / m - step * step, 0.0)
    return (shift + step).astype(x.dtype), var.astype(x.dtype)


def gradient_factors(
    layer: Any, dbeta: np.ndarray, dxc: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Set the parameter gradients from the per-channel sum(dout) and sum(dout * (x -
    mean)); return (scale, q, p) for dx = ((x - mean) * q + dout + p) * scale, or
    (scale, None, None) under running statistics, where dx = dout * scale.
    """
    layer.grads["beta"][...] = dbeta
    layer.grads["gamma"][...] = dxc / layer.std  # sum(dout * xhat), xhat = (x - mean) / std
    scale = layer.params["gamma"] / layer.std  # (C,)
    if not layer.batch_stats:
        return scale, None, None
    # Backprop through mean and variance (m values per channel):
    # dx = gamma / std * (dout - (sum(dout) + xhat * sum(dout * xhat)) / m),
    # evaluated as ((x - mean) * q + dout + p) * gamma / std with per-channel
    # q = -sum(dout * xhat) / (m * std) and p = -sum(dout) / m.
    m = dtype.type(layer.x.size // layer.x.shape[1])
    dgamma, dbeta = layer.grads["gamma"], layer.grads["beta"]
    return scale, -dgamma / (m * layer.std), -dbeta / m


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


def _per_channel(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(C,) -> a shape that broadcasts against a: (C,) for (N, C), (C, 1, 1) for images."""
    return v if a.ndim == 2 else v[:, None, None]
